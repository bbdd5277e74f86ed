// Package reference holds no Go code of its own: it is the home of the PyTorch references of
// RWKV-4 (rwkv4.py), RWKV-5.2/RWKV-6 x052/x060 (rwkv6.py) and RWKV-7 x070 (rwkv7.py), their
// self-tests (test_reference.py, test_rwkv6.py, test_rwkv7.py) and the scripts that write the
// golden files the Go tests compare against (gen_golden.py, gen_golden6.py, gen_golden7.py). The Go tests here run them all, so `go test ./...` checks
// that the committed golden files are what the references produce.
package reference
