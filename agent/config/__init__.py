"""Configuration: agent.yaml and device profiles, validated with every error located."""

from agent.config.loader import DeviceSetup, LoadedConfig, load_config
from agent.config.profiles import Profile, ProfileLibrary

__all__ = ["DeviceSetup", "LoadedConfig", "Profile", "ProfileLibrary", "load_config"]
