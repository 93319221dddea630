package checkpoint

import (
	"bytes"
	stdgzip "compress/gzip"
	"io"
	"strings"
	"testing"
)

// Journals written before the switch to klauspost/compress were gzipped by
// compress/gzip; both directions must read back byte for byte.
func TestCompressIsPlainGzip(t *testing.T) {
	body := []byte(`{"objects":[` + strings.Repeat(`{"default":{"name":"Ada","n":1}},`, 999) + `{"default":{}}]}`)

	var old bytes.Buffer
	zw := stdgzip.NewWriter(&old)
	if _, err := zw.Write(body); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := decompress(old.Bytes())
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("decompress(compress/gzip stream) = %d bytes, %v; want the %d-byte body", len(got), err, len(body))
	}

	z, err := compress(body)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := stdgzip.NewReader(bytes.NewReader(z))
	if err != nil {
		t.Fatal(err)
	}
	got, err = io.ReadAll(zr)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("compress/gzip read of compress() = %d bytes, %v; want the %d-byte body", len(got), err, len(body))
	}
	if len(z) >= len(body)/4 {
		t.Errorf("compressed %d bytes to %d; expected far less for this repetitive body", len(body), len(z))
	}
}
