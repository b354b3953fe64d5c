"""Policy lifecycle: the Rego packs officers edit, their checks, revisions, approval and bundles."""

from policy.errors import PackError, PolicyError
from policy.pack import DEFAULT_PACK_DIR, PolicyPack, load_pack, pack_from_files

__all__ = ["DEFAULT_PACK_DIR", "PackError", "PolicyError", "PolicyPack", "load_pack", "pack_from_files"]
