// Package protocol encodes and decodes the AWS IoT Secure Tunneling data-plane
// frames (PROTOCOL.md §5): a 2-byte big-endian length followed by a protobuf
// Message with seven fields and eight message types (V1, V2 and V3).
//
// The Message is encoded by hand with google.golang.org/protobuf/encoding/protowire
// rather than with generated code. The schema is seven scalar fields whose tag
// numbers never change, so the hand-written codec is about 150 lines, needs no
// .proto toolchain or regeneration script, and is faster: Marshal appends into
// a caller buffer and Unmarshal aliases the payload of the input instead of
// copying it, so the DATA hot path makes no allocations (generated code goes
// through reflection-based proto.Marshal and allocates a message per frame).
// The byte examples of PROTOCOL.md §5.3 are the test vectors that tie the
// encoding to the wire format of the C++ and Go reference implementations.
//
// Frames are independent of WebSocket message boundaries: FrameReader reads
// them from any io.Reader (a frame may span reads; a read may hold many frames).
package protocol
