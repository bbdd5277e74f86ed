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
package optim
