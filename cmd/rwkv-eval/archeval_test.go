package main

import (
	"context"
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/rwkv-go/rwkv-go/eval"
)

// What the x052/x060 (x05_test.go) and x070 (x070_test.go) command tests share.

// basePPL is `rwkv-eval ppl` of the model file on text (byte tokenizer, fp64, parallel): the loss,
// after checking that the report names an L2-D32-V256 model of architecture a and that the
// loss is not a uniform model's (the fixture exercises the model).
func basePPL(t *testing.T, modelPath, text, a string) float64 {
	t.Helper()
	base := pplJSON(t, "--model", modelPath, "--data", text, "--tokenizer", "byte", "--dtype", "fp64")
	want := num(t, base, "loss")
	if cfg, _ := base["config"].(string); !strings.HasPrefix(cfg, a+" L2-D32-V256") {
		t.Fatalf("config %q, want an %s L2-D32-V256 model", cfg, a)
	}
	if math.Abs(want-math.Log(256)) < 0.05 {
		t.Fatalf("loss %v is that of a uniform model: the fixture does not exercise the model", want)
	}
	return want
}

// checkUnboundedModesAgree: beyond --ctx-len the unbounded modes (rnn, chunked rnn) agree with
// each other, not with the windows.
func checkUnboundedModesAgree(t *testing.T, modelPath, text string) {
	t.Helper()
	rnn := num(t, pplJSON(t, "--model", modelPath, "--data", text, "--dtype", "fp64", "--mode", "rnn", "--ctx-len", "16"), "loss")
	chunked := num(t, pplJSON(t, "--model", modelPath, "--data", text, "--dtype", "fp64", "--mode", "rnn", "--chunk", "7", "--ctx-len", "16"), "loss")
	if math.Abs(rnn-chunked) > 1e-9 {
		t.Fatalf("rnn %.12g, chunked %.12g with ctx-len 16", rnn, chunked)
	}
}

// checkLambadaBatches: `rwkv-eval lambada` of the model file on the 3-example fixture scores the
// same with batches of 1 and 3 (fp64).
func checkLambadaBatches(t *testing.T, modelPath, lambada string) {
	t.Helper()
	var res []eval.LambadaResult
	for _, batch := range []string{"1", "3"} {
		code, out, errOut := runCLI(t, context.Background(), "lambada", "--model", modelPath, "--data", lambada, "--json", "--batch", batch, "--dtype", "fp64")
		if code != exitOK {
			t.Fatalf("exit %d\n%s", code, errOut)
		}
		var r eval.LambadaResult
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatal(err)
		}
		if r.Count != 3 || r.TargetTokens != 14 || r.Accuracy < 0 || r.Accuracy > 1 || !(r.PPL > 1) {
			t.Fatalf("batch %s: got %+v", batch, r)
		}
		res = append(res, r)
	}
	if math.Abs(res[0].Loss-res[1].Loss) > 1e-9 || res[0].Correct != res[1].Correct {
		t.Fatalf("batch 1 %+v and batch 3 %+v differ", res[0], res[1])
	}
}

// generateText is `rwkv-eval generate` of the model file from "the " (24 tokens, no stop
// token, temperature 1.2, top-p 0.95, both repetition penalties 0.3) with the seed and extra
// flags.
func generateText(t *testing.T, modelPath, seed string, extra ...string) string {
	t.Helper()
	args := append([]string{"generate", "--model", modelPath, "--prompt", "the ", "--max-tokens", "24",
		"--stop-token", "-1", "--echo=false", "--seed", seed, "--temperature", "1.2", "--top-p", "0.95",
		"--alpha-presence", "0.3", "--alpha-frequency", "0.3"}, extra...)
	code, out, errOut := runCLI(t, context.Background(), args...)
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	return out
}
