"""Generated protobuf code (scripts/gen-proto); do not edit."""
