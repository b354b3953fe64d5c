# Role matrix for bureau staff (subject.type "employee"): which actions, datasets, classifications
# and fields each role may touch (data.ztcp.config.roles). A staff request must be allowed by at
# least one of the subject's roles; personal data additionally needs need-to-know or break-glass.
package ztcp.roles

import rego.v1

matrix := data.ztcp.config.roles

# Public data is governed by data.ztcp.config.public for every subject type, not by the matrix.
governed if {
	data.ztcp.common.is_employee
	data.ztcp.common.classification != "public"
}

applies if governed

staff_roles contains r if {
	some r in data.ztcp.common.roles
	matrix[r]
}

# The matrix is narrowed in three steps, each a set computed once per decision (as functions,
# has_action(r)… were called again by every rule that asked, and a call is not cached):
# roles allowing the action, of those the ones covering the dataset, of those the classification.
action_roles contains r if {
	some r in staff_roles
	input.action in matrix[r].actions
}

dataset_roles contains r if {
	some r in action_roles
	"*" in matrix[r].datasets
}

dataset_roles contains r if {
	some r in action_roles
	input.resource.dataset in matrix[r].datasets
}

allowing_roles contains r if {
	some r in dataset_roles
	data.ztcp.common.rank <= data.ztcp.common.class_rank[matrix[r].max_classification]
}

allowed if count(allowing_roles) > 0

some_action if count(action_roles) > 0

some_action_dataset if count(dataset_roles) > 0

deny contains "role_not_permitted" if {
	governed
	count(staff_roles) == 0
}

deny contains "action_not_permitted" if {
	governed
	count(staff_roles) > 0
	not some_action
}

deny contains "dataset_not_permitted" if {
	governed
	some_action
	not some_action_dataset
}

deny contains "classification_not_permitted" if {
	governed
	some_action_dataset
	not allowed
}

# Internal (non-personal) data: the role matrix alone decides.
grant contains "role_permits" if {
	governed
	allowed
	not data.ztcp.common.personal
}

# Field allow-lists: a role with "*" sees every requested field; otherwise the union of the
# allowing roles' lists (minimum necessary, e.g. call_center).
unrestricted if {
	some r in allowing_roles
	"*" in matrix[r].fields
}

allowlisted contains f if {
	some r in allowing_roles
	some f in matrix[r].fields
}

withheld contains f if {
	governed
	allowed
	not unrestricted
	some f in data.ztcp.common.requested_fields
	not f in allowlisted
}
