package data

import (
	"bufio"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// benchCorpus writes a u16 binidx corpus of RWKV_BENCH_MB megabytes (default
// 64) of random tokens below 50277, in 1000 documents, and opens it.
func benchCorpus(b *testing.B) *Tokens {
	b.Helper()
	mb := 64
	if s := os.Getenv("RWKV_BENCH_MB"); s != "" {
		var err error
		if mb, err = strconv.Atoi(s); err != nil || mb < 1 {
			b.Fatalf("RWKV_BENCH_MB=%q", s)
		}
	}
	n := mb << 19 // tokens of 2 bytes
	const docs = 1000
	prefix := filepath.Join(b.TempDir(), "bench")
	f, err := os.Create(prefix + ".bin")
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	r := rand.New(rand.NewPCG(1, 2))
	var buf [2]byte
	for range n {
		binary.LittleEndian.PutUint16(buf[:], uint16(r.IntN(50277)))
		w.Write(buf[:])
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	f.Close()
	sizes := make([]int32, docs)
	ptrs := make([]int64, docs)
	docIdx := []int64{0}
	for i := range docs {
		lo, hi := i*n/docs, (i+1)*n/docs
		sizes[i], ptrs[i] = int32(hi-lo), int64(2*lo)
		docIdx = append(docIdx, int64(i+1))
	}
	writeFile(b, prefix+".idx", buildIdx(8, sizes, ptrs, docIdx))
	toks, err := Open(prefix)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { toks.Close() })
	return toks
}

// BenchmarkLoader measures how many tokens per second the prefetching loader
// hands out (B=8, T=1024): the rate the trainer could consume at most.
func BenchmarkLoader(b *testing.B) {
	toks := benchCorpus(b)
	const B, T = 8, 1024
	for _, kind := range []string{SamplingRandom, SamplingMagicPrime, SamplingSequential} {
		b.Run(kind, func(b *testing.B) {
			s, err := NewSampler(kind, toks, T, 1)
			if err != nil {
				b.Fatal(err)
			}
			l, err := NewLoader(s, B, T, 4)
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			b.ResetTimer()
			n := 0
			for b.Loop() {
				l.Next()
				n++
			}
			b.ReportMetric(float64(n*B*T)/b.Elapsed().Seconds(), "tok/s")
		})
	}
}

// BenchmarkCheckVocab measures the one-off token id scan at open.
func BenchmarkCheckVocab(b *testing.B) {
	toks := benchCorpus(b)
	n := 0
	for b.Loop() {
		toks.checked = 0
		if err := toks.CheckVocab(50277); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.ReportMetric(float64(n*toks.Len())/b.Elapsed().Seconds(), "tok/s")
}

func benchText() string {
	return strings.Repeat("The quick brown fox jumps over the lazy dog's back; 你好, 世界! 12345\n", 2000)
}

func BenchmarkWorldEncode(b *testing.B) {
	tok, err := LoadWorldTokenizer(writeWorldVocab(b, testWorldExtra))
	if err != nil {
		b.Fatal(err)
	}
	text := benchText()
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		tok.Encode(text)
	}
}

func BenchmarkNeoXEncode(b *testing.B) {
	tok := loadTestNeoX(b, testNeoXJSON(b, `{"type": "NFC"}`, nil))
	text := benchText()
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		tok.Encode(text)
	}
}

// BenchmarkRealVocab measures tokens/s of both tokenizers with the shipped
// vocabularies on benchText.
func BenchmarkRealVocab(b *testing.B) {
	world, err := WorldVocabTokenizer()
	if err != nil {
		b.Fatal(err)
	}
	neox, err := NeoX20BTokenizer()
	if err != nil {
		b.Fatal(err)
	}
	for _, tt := range []struct {
		name, text string
		tok        Tokenizer
	}{
		{"world", benchText(), world},
		{"neox", benchText(), neox},
		{"world-multilingual", benchMultilingual, world},
		{"neox-multilingual", benchMultilingual, neox},
	} {
		tok, text := tt.tok, tt.text
		b.Run(tt.name, func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			n := 0
			for b.Loop() {
				n += len(tok.Encode(text))
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "tok/s")
		})
	}
}

// benchMultilingual is text in many scripts, with combining marks, emoji and
// code: the NeoX normalizer's slower paths.
var benchMultilingual = strings.Repeat(`Привет, мир! Съешь же ещё этих мягких французских булок, да выпей чаю.
日本語のテキスト：ひらがな、カタカナ、漢字。東京は晴れです。한국어 텍스트입니다. 안녕하세요, 세계!
العربية: مرحبا بالعالم! ١٢٣٤٥ हिन्दी: नमस्ते दुनिया, क़िला ज़रूर ไทย: สวัสดีชาวโลก
Tiếng Việt: Xin chào thế giới. Ünïcödé çàfé naïve 😀😃😄😁 👍🏽 🇩🇪 👨‍💻 ❤️ 🤗 𝟙𝟚 𠀋𠀍
বাংলা ভাষা: আমার সোনার বাংলা, আমি তোমায় ভালোবাসি। தமிழ்: யாதும் ஊரே யாவரும் கேளிர்.
മലയാളം: എല്ലാവർക്കും നമസ്കാരം. ಕನ್ನಡ: ಎಲ್ಲರಿಗೂ ನಮಸ್ಕಾರ. 𠀋𠀍𠁷 각
func main() { fmt.Println("hello, 世界") }
`, 300)
