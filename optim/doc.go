// Package optim holds the optimiser side of training: AdamW with
// RWKV-LM's parameter groups, global-norm gradient clipping and
// learning-rate schedules.
//
// The numerics follow PyTorch 1.13 (torch.optim.AdamW,
// torch.nn.utils.clip_grad_norm_) and RWKV-LM's trainer.py, so a run can
// be compared step by step with the reference. Parameters are plain
// slices; the package imports the standard library only and works for
// float32 and float64.
//
// A training step reads:
//
//	norm := optim.ClipGlobalNorm(params, cfg.GradClip)
//	opt.Step(sched.LR(step))
//
// AdamW's kernels replay torch's per-tensor ops in torch's order and
// rounding, so on the same inputs they give torch 1.13's results bit for
// bit (float32 and float64; see testdata/gen_torch_adamw.py). Tensors of
// 64k elements or more are updated by a pool of GOMAXPROCS-1 long-lived
// goroutines plus the caller; the pool stops when the AdamW is collected.
package optim
