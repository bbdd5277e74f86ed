// neox_ref.js runs Hugging Face `tokenizers` (npm tokenizers@0.23.2, the
// official Rust library's Node binding) as the reference for the NeoX
// tokenizer's tests and for gen_unicode.go.
//
//   node neox_ref.js MODE TOKENIZER_JSON < in.json > out.json
//
// in.json is a JSON array of base64 strings (raw bytes). Each is read as
// UTF-8 the way Python's errors="replace", Rust's from_utf8_lossy and
// WHATWG's TextDecoder do (each maximal invalid subsequence becomes U+FFFD),
// then, by MODE:
//   encode   the token ids (no special tokens added)
//   nfc      the tokenizer's normalizer output, as base64 UTF-8
//   nfkc     the library's NFKC normalizer's output, as base64 UTF-8
//   pretok   the tokenizer's pre-tokenizer pieces, byte-level mapped
// The module is found through NODE_PATH or a node_modules above the working
// directory (npm install --ignore-scripts tokenizers@0.23.2).
'use strict';
const fs = require('fs');
const { Tokenizer, nfkcNormalizer } = require('tokenizers');

async function main() {
  const [mode, vocab] = process.argv.slice(2);
  const tok = Tokenizer.fromFile(vocab);
  const dec = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });
  const inputs = JSON.parse(fs.readFileSync(0, 'utf8')).map((b64) => dec.decode(Buffer.from(b64, 'base64')));
  const b64 = (s) => Buffer.from(s, 'utf8').toString('base64');
  let out;
  switch (mode) {
    case 'encode': {
      out = [];
      for (let i = 0; i < inputs.length; i += 1000) {
        const encs = await tok.encodeBatch(inputs.slice(i, i + 1000), { addSpecialTokens: false });
        for (const e of encs) out.push(Array.from(e.getIds()));
      }
      break;
    }
    case 'nfc': {
      const n = tok.getNormalizer();
      out = inputs.map((s) => b64(n ? n.normalizeString(s) : s));
      break;
    }
    case 'nfkc': {
      const n = nfkcNormalizer();
      out = inputs.map((s) => b64(n.normalizeString(s)));
      break;
    }
    case 'pretok': {
      const p = tok.getPreTokenizer();
      // The pieces come back byte-level mapped (Ġ for a space, ...).
      out = inputs.map((s) => p.preTokenizeString(s).map(([piece]) => piece));
      break;
    }
    default:
      throw new Error(`mode ${JSON.stringify(mode)}: want encode, nfc or pretok`);
  }
  process.stdout.write(JSON.stringify(out));
}

main().catch((e) => {
  process.stderr.write(`neox_ref.js: ${e.stack || e}\n`);
  process.exit(1);
});
