package protocol

import (
	"encoding/binary"
	"fmt"
	"io"

	"google.golang.org/protobuf/encoding/protowire"
)

// AppendFrame appends the frame of m (2-byte big-endian length + protobuf)
// to dst.
func AppendFrame(dst []byte, m *Message) ([]byte, error) {
	start := len(dst)
	dst = append(dst, 0, 0)
	dst, err := m.Marshal(dst)
	if err != nil {
		return dst[:start], err
	}
	n := len(dst) - start - LengthSize
	if n > MaxFrameBody {
		return dst[:start], ErrFrameTooLarge
	}
	if n == 0 {
		return dst[:start], fmt.Errorf("encode frame: %w", ErrBadLength)
	}
	binary.BigEndian.PutUint16(dst[start:], uint16(n))
	return dst, nil
}

// readBufSize holds one maximal WebSocket message plus a partial frame.
const readBufSize = MaxWSMessage + MaxFrameBody + LengthSize

// FrameReader reads tunnel frames from a byte stream. It reads ahead into an
// internal buffer, so frames may span reads and a read may hold many frames.
// It is not safe for concurrent use.
type FrameReader struct {
	r    io.Reader
	buf  []byte
	head int // start of unconsumed bytes
	tail int // end of buffered bytes
	err  error
}

// NewFrameReader returns a FrameReader that reads from r.
func NewFrameReader(r io.Reader) *FrameReader {
	return &FrameReader{r: r, buf: make([]byte, readBufSize)}
}

// Reset makes r read from rd, discarding buffered bytes and any error, and
// keeps the buffer.
func (r *FrameReader) Reset(rd io.Reader) {
	*r = FrameReader{r: rd, buf: r.buf}
}

// Next returns the protobuf body of the next frame. The slice is valid until
// the next call. It returns io.EOF at a clean end of stream,
// io.ErrUnexpectedEOF when the stream ends inside a frame, and ErrBadLength
// for a length prefix of 0; after an error every call returns it again.
func (r *FrameReader) Next() ([]byte, error) {
	if r.err != nil {
		return nil, r.err
	}
	if err := r.fill(LengthSize); err != nil {
		return nil, r.fail(err)
	}
	n := int(binary.BigEndian.Uint16(r.buf[r.head:]))
	if n == 0 {
		return nil, r.fail(ErrBadLength)
	}
	if err := r.fill(LengthSize + n); err != nil {
		return nil, r.fail(err)
	}
	body := r.buf[r.head+LengthSize : r.head+LengthSize+n]
	r.head += LengthSize + n
	return body, nil
}

// ReadMessage reads the next frame into m (see Message.Unmarshal: m.Payload
// is valid until the next call). A malformed message is returned as an error
// but does not poison the reader: the frame boundary is still known.
func (r *FrameReader) ReadMessage(m *Message) error {
	b, err := r.Next()
	if err != nil {
		return err
	}
	return m.Unmarshal(b)
}

// Buffered returns the number of bytes read ahead but not yet consumed.
func (r *FrameReader) Buffered() int { return r.tail - r.head }

func (r *FrameReader) fail(err error) error {
	if err == io.EOF && r.tail > r.head {
		err = io.ErrUnexpectedEOF
	}
	r.err = err
	return err
}

// fill makes at least n unconsumed bytes available, compacting the buffer
// when the frame would not fit behind the current position.
func (r *FrameReader) fill(n int) error {
	if r.tail-r.head >= n {
		return nil
	}
	if r.head == r.tail {
		r.head, r.tail = 0, 0
	} else if r.head+n > len(r.buf) {
		r.tail = copy(r.buf, r.buf[r.head:r.tail])
		r.head = 0
	}
	for empty := 0; r.tail-r.head < n; {
		m, err := r.r.Read(r.buf[r.tail:])
		r.tail += m
		if r.tail-r.head >= n {
			return nil
		}
		if err != nil {
			return err
		}
		if m > 0 {
			empty = 0
		} else if empty++; empty > 100 {
			return io.ErrNoProgress
		}
	}
	return nil
}

// DataHeadroom is the space EncodeData needs in front of a payload that was
// read in place.
const DataHeadroom = 32

// EncodeData encodes a DATA frame around a payload that is already stored at
// buf[DataHeadroom:DataHeadroom+n], without copying the payload, so a local
// socket can be read straight into a frame buffer. It returns the frame, a
// subslice of buf extended by the fields that follow the payload (give buf
// capacity for them to avoid a reallocation). The bytes equal AppendFrame of
// the same Message.
func EncodeData(buf []byte, n int, streamID int32, serviceID string, connectionID uint32) ([]byte, error) {
	if n > MaxPayload {
		return nil, ErrPayloadTooLarge
	}
	var hdr [DataHeadroom]byte
	h := append(hdr[:0], 0, 0)
	h = protowire.AppendTag(h, fieldType, protowire.VarintType)
	h = protowire.AppendVarint(h, uint64(TypeData))
	if streamID != 0 {
		h = protowire.AppendTag(h, fieldStreamID, protowire.VarintType)
		h = protowire.AppendVarint(h, uint64(int64(streamID)))
	}
	if n > 0 {
		h = protowire.AppendTag(h, fieldPayload, protowire.BytesType)
		h = protowire.AppendVarint(h, uint64(n))
	}
	start := DataHeadroom - len(h)
	copy(buf[start:], h)
	out := buf[start : DataHeadroom+n]
	if serviceID != "" {
		out = protowire.AppendTag(out, fieldServiceID, protowire.BytesType)
		out = protowire.AppendString(out, serviceID)
	}
	if connectionID != 0 {
		out = protowire.AppendTag(out, fieldConnectionID, protowire.VarintType)
		out = protowire.AppendVarint(out, uint64(connectionID))
	}
	if len(out)-LengthSize > MaxFrameBody {
		return nil, ErrFrameTooLarge
	}
	binary.BigEndian.PutUint16(out, uint16(len(out)-LengthSize))
	return out, nil
}
