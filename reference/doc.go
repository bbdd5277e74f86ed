// Package reference holds no Go code of its own: it is the home of the PyTorch reference of
// RWKV-4 (rwkv4.py), its self-test (test_reference.py) and the script that writes the golden
// files the Go tests compare against (gen_golden.py). The Go tests here run both scripts, so
// `go test ./...` checks that the committed golden files are what the reference produces.
package reference
