package functions

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"errors"
)

func init() {
	register(Spec{
		Name:           "aes",
		Summary:        "AES-256-CTR encrypt and decrypt 8 input-selected 1 MiB segments of a plaintext corpus (FunctionBench pyaes)",
		DefaultDataMiB: 32,
		memory:         func(d int) (int, int) { return d, 10 },
		newImpl:        func() impl { return &aesFunc{} },
	})
}

// aesFunc encrypts part of a corpus with one of a table of keys. Under TCG
// there is no fast AES-NI, so the work per invoke is kept to 8 MiB each way.
type aesFunc struct {
	corpus []byte
	keys   [][]byte
}

const (
	aesSegments  = 8
	aesTotal     = 8 * MiB
	aesKeyCount  = 256
	aesPageAlign = 4096
)

func (f *aesFunc) init(dataMiB int) error {
	r := newRNG(seedFor("aes/init", 0))
	f.corpus = make([]byte, dataMiB*MiB)
	r.fillBytes(f.corpus)
	f.keys = make([][]byte, aesKeyCount)
	for i := range f.keys {
		f.keys[i] = make([]byte, 32)
		r.fillBytes(f.keys[i])
	}
	return nil
}

func (f *aesFunc) invoke(input uint64) (Result, error) {
	r := newRNG(seedFor("aes", input))
	key := f.keys[r.intn(len(f.keys))]
	block, err := aes.NewCipher(key)
	if err != nil {
		return Result{}, err
	}
	// Small corpora (tests) encrypt half of themselves.
	segLen := min(aesTotal, len(f.corpus)/2) / aesSegments / aesPageAlign * aesPageAlign
	if segLen == 0 {
		return Result{}, errors.New("corpus too small")
	}
	d := newDigest()
	plain := make([]byte, segLen)
	var iv [aes.BlockSize]byte
	for s := 0; s < aesSegments; s++ {
		off := r.intn((len(f.corpus)-segLen)/aesPageAlign+1) * aesPageAlign
		pt := f.corpus[off : off+segLen]
		r.fillBytes(iv[:])
		ct := make([]byte, segLen)
		cipher.NewCTR(block, iv[:]).XORKeyStream(ct, pt)
		cipher.NewCTR(block, iv[:]).XORKeyStream(plain, ct)
		if !bytes.Equal(plain, pt) {
			return Result{}, errors.New("decrypted segment differs from plaintext")
		}
		d.Write(iv[:])
		d.Write(ct)
	}
	return Result{
		Checksum:     d.sum(),
		OutputBytes:  int64(aesSegments * segLen),
		TouchedBytes: int64(aesSegments*segLen + len(key)),
	}, nil
}
