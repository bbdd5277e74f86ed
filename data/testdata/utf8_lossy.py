# utf8_lossy.py writes utf8_lossy.json for TestToValidUTF8Lossy: byte strings
# (base64) rich in invalid UTF-8 and Python's bytes.decode("utf-8", "replace")
# of each, which replaces each maximal invalid subsequence with U+FFFD.
#   python3 utf8_lossy.py > utf8_lossy.json
import base64, json, random

random.seed(1)
cases = [b'\xff\xff', b'\xe2\x82', b'\xe2\x82a', b'\xed\xa0\x80', b'\xf4\x90\x80\x80', b'\xc0\xaf',
         b'\xe0\x80\xaf', b'\xf0\x8f\xbf\xbf', b'\x80\x80', b'\xf0\x9f\x98', b'a\xf0\x9f\x98\x80\xf0\x9fb',
         b'\xf8\x88\x80\x80\x80', b'\xc2', b'\xdf\xdf', b'\xe1\x80\xe1\x80\x80', b'\xef\xbf\xbe\xef\xbf']
alphabet = [0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xe1,
            0xec, 0xed, 0xee, 0xef, 0xf0, 0xf1, 0xf3, 0xf4, 0xf5, 0xff]
for _ in range(1500):
    cases.append(bytes(random.choice(alphabet) for _ in range(random.randint(1, 8))))
b64 = lambda b: base64.b64encode(b).decode()
print(json.dumps([[b64(c), b64(c.decode('utf-8', 'replace').encode())] for c in cases]))
