"""Target profiles: what a device is (ISA, cores, precisions) and which backends suit it."""

from .registry import HOST, ProfileError, load_profile, parse_profile_file, profile_names
from .schema import Arch, TargetProfile

__all__ = ["Arch", "HOST", "ProfileError", "TargetProfile", "load_profile", "parse_profile_file", "profile_names"]
