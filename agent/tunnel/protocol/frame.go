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

// ReadBufferSize is the size of a FrameReader's buffer: one maximal
// WebSocket message plus a partial frame.
const ReadBufferSize = MaxWSMessage + MaxFrameBody + LengthSize

// smallBufSize is the buffer a lending FrameReader reads into while it
// holds no large one: enough for control frames and interactive data.
const smallBufSize = 4 << 10

// FrameReader reads tunnel frames from a byte stream. It reads ahead into an
// internal buffer, so frames may span reads and a read may hold many frames.
// It is not safe for concurrent use.
type FrameReader struct {
	r    io.Reader
	buf  []byte
	head int // start of unconsumed bytes
	tail int // end of buffered bytes
	err  error

	// With a Lender (NewLendingFrameReader): buf is small or, while lent
	// is set, a ReadBufferSize buffer from lend.
	lend  Lender
	small []byte
	lent  bool
}

// Lender lends FrameReaders their large buffer (see NewLendingFrameReader).
type Lender interface {
	Get() []byte // ReadBufferSize bytes
	Put([]byte)  // the buffer is not used again by the reader
}

// NewFrameReader returns a FrameReader that reads from r.
func NewFrameReader(r io.Reader) *FrameReader {
	return &FrameReader{r: r, buf: make([]byte, ReadBufferSize)}
}

// NewLendingFrameReader returns a FrameReader that holds a ReadBufferSize
// buffer, borrowed from lend, only while it holds unread bytes of a frame
// larger than a small buffer of its own: when it has nothing buffered, it
// gives the buffer back before it reads again, a read that may wait. A
// tunnel that is idle, or carries only small frames, thus holds 4 KiB
// instead of 192 KiB; in a bulk transfer the buffer goes back and forth
// once per message (when a message ends with a frame), at the cost of a
// copy of the first read of the next one.
func NewLendingFrameReader(r io.Reader, lend Lender) *FrameReader {
	b := make([]byte, smallBufSize)
	return &FrameReader{r: r, buf: b, lend: lend, small: b}
}

// Reset makes r read from rd, discarding buffered bytes and any error, and
// keeps its buffer (a lending reader gives back a borrowed one).
func (r *FrameReader) Reset(rd io.Reader) {
	r.Release()
	*r = FrameReader{r: rd, buf: r.buf, lend: r.lend, small: r.small}
}

// Release gives a borrowed buffer back to the Lender, discarding what it
// holds; the reader reads into its small buffer again. For a reader that
// is no longer used, or Reset.
func (r *FrameReader) Release() {
	if r.lent {
		r.lend.Put(r.buf)
		r.buf, r.lent = r.small, false
		r.head, r.tail = 0, 0
	}
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
// when the frame would not fit behind the current position. A lending
// reader gives its large buffer back when nothing is buffered, and borrows
// one when the frame is larger than its small buffer.
func (r *FrameReader) fill(n int) error {
	if r.tail-r.head >= n {
		return nil
	}
	if r.head == r.tail {
		r.Release()
		r.head, r.tail = 0, 0
	}
	if r.head+n > len(r.buf) {
		dst := r.buf
		if n > len(dst) { // only a lending reader's small buffer
			dst, r.lent = r.lend.Get(), true
		}
		r.tail = copy(dst, r.buf[r.head:r.tail])
		r.head, r.buf = 0, dst
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
