"""Generated protobuf and gRPC stubs for berth.v1 (make protos; never edit)."""
