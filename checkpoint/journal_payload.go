package checkpoint

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
)

// The journal of the PostgreSQL store keeps a batch's request body and the
// row key of each of its objects in one gzip-compressed value
// (journal.batch_gzip, schema version 8). As a jsonb column of their own the
// row keys cost the database more than the rest of the entry (1.8 µs per row
// of PostgreSQL CPU for the entry with them, 0.7 without, for 1,000-row
// batches; see docs/performance.md), and they compress as well as the body.
//
// The value, before compression:
//
//	uvarint len(body) · body · uvarint len(keys) · per key: uvarint len(key) · per value: uvarint len(value) · value
//	[· uvarint len(held) · held]
//
// held, present only when the batch holds rows back (Batch.Held, rare), is
// the JSON array of those rejects in the file store's reject format.
//
// gzip rather than the column's own TOAST compression: PostgreSQL's lz4 took
// more of its CPU than storing gzip output does, and wrote 3.6 times the WAL.

// encodePayload compresses body, keys and held into a batch_gzip value.
func encodePayload(body []byte, keys [][]string, held []Reject) ([]byte, error) {
	var frame []byte
	frame = binary.AppendUvarint(frame, uint64(len(body)))
	var tail []byte
	tail = binary.AppendUvarint(tail, uint64(len(keys)))
	for _, k := range keys {
		tail = binary.AppendUvarint(tail, uint64(len(k)))
		for _, v := range k {
			tail = binary.AppendUvarint(tail, uint64(len(v)))
			tail = append(tail, v...)
		}
	}
	if len(held) > 0 {
		h, err := encodeHeld(held)
		if err != nil {
			return nil, err
		}
		tail = binary.AppendUvarint(tail, uint64(len(h)))
		tail = append(tail, h...)
	}
	return compressParts(frame, body, tail)
}

// encodeHeld is the JSON of a batch's held rows, as the file store keeps
// rejects.
func encodeHeld(held []Reject) ([]byte, error) {
	h, err := json.Marshal(fileRejects(held))
	if err != nil {
		return nil, fmt.Errorf("held rows: %w", err)
	}
	return h, nil
}

// decodeHeld is the inverse of encodeHeld, for a batch of sync.
func decodeHeld(sync string, h []byte) ([]Reject, error) {
	var frs []fileReject
	if err := json.Unmarshal(h, &frs); err != nil {
		return nil, fmt.Errorf("%w: held rows: %v", errPayload, err)
	}
	return rejectsOf(sync, frs), nil
}

// fileRejects are rejects in the file store's format.
func fileRejects(rs []Reject) []fileReject {
	if len(rs) == 0 {
		return nil
	}
	frs := make([]fileReject, len(rs))
	for i, r := range rs {
		frs[i] = fileReject{RowKey: normKey(r.RowKey), Code: cleanText(r.Code), Message: cleanText(r.Message),
			Payload: r.Payload, Attempts: r.Attempts, FirstSeen: r.FirstSeen, LastSeen: r.LastSeen,
			WaitSync: r.WaitSync, WaitKey: r.WaitKey}
	}
	return frs
}

// rejectsOf is the inverse of fileRejects, for rejects of sync.
func rejectsOf(sync string, frs []fileReject) []Reject {
	if len(frs) == 0 {
		return nil
	}
	out := make([]Reject, len(frs))
	for i, fr := range frs {
		out[i] = fr.reject(sync)
	}
	return out
}

var errPayload = errors.New("malformed journal payload")

// decodePayload is the inverse of encodePayload, for a batch of sync. An
// empty body and an empty list of keys are nil.
func decodePayload(sync string, z []byte) (body []byte, keys [][]string, held []Reject, err error) {
	raw, err := decompress(z)
	if err != nil {
		return nil, nil, nil, err
	}
	p := payloadReader{b: raw}
	body = p.bytes()
	count := p.uvarint()
	if count > uint64(len(p.b)) { // every key takes at least a byte
		p.bad = true
	}
	if !p.bad && count > 0 {
		keys = make([][]string, count)
	}
	for i := range keys {
		cols := p.uvarint()
		if p.bad || cols > uint64(len(p.b)) {
			p.bad = true
			break
		}
		if cols == 0 {
			continue // nil and empty keys are the same
		}
		keys[i] = make([]string, cols)
		for j := range keys[i] {
			keys[i][j] = string(p.bytes())
		}
	}
	var h []byte
	if !p.bad && len(p.b) > 0 {
		if h = p.bytes(); len(h) == 0 {
			p.bad = true // written only when there are held rows
		}
	}
	if p.bad || len(p.b) != 0 {
		return nil, nil, nil, errPayload
	}
	if len(h) > 0 {
		if held, err = decodeHeld(sync, h); err != nil {
			return nil, nil, nil, err
		}
	}
	if len(body) == 0 {
		body = nil
	}
	return body, keys, held, nil
}

// payloadReader reads the frame of a payload; bad sticks once set.
type payloadReader struct {
	b   []byte
	bad bool
}

func (p *payloadReader) uvarint() uint64 {
	if p.bad {
		return 0
	}
	n, w := binary.Uvarint(p.b)
	if w <= 0 {
		p.bad = true
		return 0
	}
	p.b = p.b[w:]
	return n
}

// bytes returns the next length-prefixed value, a view of the frame.
func (p *payloadReader) bytes() []byte {
	n := p.uvarint()
	if p.bad || n > uint64(len(p.b)) {
		p.bad = true
		return nil
	}
	v := p.b[:n:n]
	p.b = p.b[n:]
	return v
}
