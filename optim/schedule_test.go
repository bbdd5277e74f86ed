package optim

import (
	"math"
	"strings"
	"testing"
)

type lrAt struct {
	step int
	want float64
}

// TestScheduleLR checks LR against values computed by hand (hand) and by
// RWKV-LM's trainer.py formula run in Python 3 (py; /tmp script, float64).
func TestScheduleLR(t *testing.T) {
	tests := []struct {
		name string
		cfg  ScheduleConfig
		want []lrAt
	}{
		{"py/exp warmup 10 total 100", ScheduleConfig{Exp, 6e-4, 1e-5, 10, 100}, []lrAt{
			{-5, 0.00011999999999999999}, // negative counts as 0
			{0, 0.00011999999999999999},
			{1, 0.000168},
			{5, 0.00036},
			{9, 0.0005519999999999999},
			{10, 0.0005733159367826763},
			{50, 9.291900907248626e-05},
			{98, 1.0465433829854247e-05},
			{99, 1e-05},
			{100, 1e-05},
			{1000, 1e-05},
		}},
		{"py/exp no warmup", ScheduleConfig{Exp, 6e-4, 1e-5, 0, 10}, []lrAt{
			{0, 0.0003984154077340755},
			{4, 7.745966692414834e-05},
			{8, 1.5059658546149225e-05},
			{9, 1e-05},
			{10, 1e-05},
		}},
		{"py/cosine", ScheduleConfig{Cosine, 1e-3, 1e-4, 2, 6}, []lrAt{
			{0, 0.0002},
			{1, 0.0006000000000000001},
			{2, 0.0008681980515339464},
			{3, 0.00055},
			{4, 0.00023180194846605365},
			{5, 0.0001},
			{6, 0.0001},
		}},
		{"py/linear", ScheduleConfig{Linear, 1e-3, 1e-4, 2, 6}, []lrAt{
			{0, 0.0002},
			{1, 0.0006000000000000001},
			{2, 0.0007750000000000001},
			{3, 0.00055},
			{4, 0.000325},
			{5, 0.00010000000000000005},
			{6, 0.00010000000000000005},
		}},
		// lr_final == lr_init: constant apart from warmup (0.2, 0.6, 1).
		{"hand/exp equal ends", ScheduleConfig{Exp, 3e-4, 3e-4, 4, 8}, []lrAt{
			{0, 6e-5}, {2, 1.8e-4}, {4, 3e-4}, {7, 3e-4}, {100, 3e-4},
		}},
		// Zero end: exp falls back to linear; progress (s+1)/4.
		{"hand/exp to zero", ScheduleConfig{Exp, 1e-3, 0, 0, 4}, []lrAt{
			{0, 7.5e-4}, {1, 5e-4}, {2, 2.5e-4}, {3, 0}, {4, 0},
		}},
		{"hand/exp from zero", ScheduleConfig{Exp, 0, 1e-3, 0, 4}, []lrAt{
			{0, 2.5e-4}, {1, 5e-4}, {3, 1e-3}, {9, 1e-3},
		}},
		// total == warmup: warmup of lr_init, then lr_final at once.
		{"hand/total equals warmup", ScheduleConfig{Exp, 1e-3, 1e-4, 5, 5}, []lrAt{
			{0, 2e-4}, {1, 3.6e-4}, {4, 8.4e-4}, {5, 1e-4}, {6, 1e-4},
		}},
		{"hand/one step", ScheduleConfig{Exp, 6e-4, 1e-5, 0, 1}, []lrAt{
			{0, 1e-5}, {1, 1e-5},
		}},
		{"hand/constant", ScheduleConfig{Constant, 1e-3, 5, 4, 0}, []lrAt{
			{0, 2e-4}, {2, 6e-4}, {4, 1e-3}, {100, 1e-3},
		}},
		{"hand/cosine midpoint", ScheduleConfig{Cosine, 1e-3, 0, 0, 4}, []lrAt{
			{1, 5e-4}, {3, 0},
		}},
		// RWKV-v7: reference/rwkv7.py lr_at (the adamw7 golden's schedule), Python 3 float64.
		{"py/cosine_v7 warmup 2 total 6", ScheduleConfig{CosineV7, 4e-3, 1e-3, 2, 6}, []lrAt{
			{-1, 4e-05}, {0, 4e-05}, {1, 0.00202}, {2, 0.004}, {3, 0.0035606601717798215},
			{4, 0.0025}, {5, 0.0014393398282201788}, {6, 0.001}, {100, 0.001},
		}},
		{"py/cosine_v7 no warmup", ScheduleConfig{CosineV7, 6e-4, 6e-5, 0, 10}, []lrAt{
			{0, 0.0006}, {1, 0.0005867852593996914}, {5, 0.00033}, {9, 7.321474060030856e-05},
			{10, 6.0000000000000015e-05},
		}},
		// total == warmup: warmup (0.01, 0.505 of lr_init), then lr_final.
		{"hand/cosine_v7 total equals warmup", ScheduleConfig{CosineV7, 1e-3, 1e-4, 2, 2}, []lrAt{
			{0, 1e-5}, {1, 5.05e-4}, {2, 1e-4}, {3, 1e-4},
		}},
		// RWKV-v5 (x052/x060): RWKV-LM RWKV-v5 trainer.py's on_train_batch_start re-run in
		// Python 3 (step = real_step, epoch_count*epoch_steps = total, my_pile_edecay 0).
		{"py/exp_v5 warmup 10 total 100", ScheduleConfig{ExpV5, 6e-4, 1e-5, 10, 100}, []lrAt{
			{-3, 5.999999999999999e-06}, {0, 5.999999999999999e-06}, {1, 6.539999999999999e-05},
			{5, 0.000303}, {9, 0.0005405999999999999}, {10, 0.0005733159367826763},
			{50, 9.291900907248626e-05}, {98, 1.0465433829854247e-05}, {99, 1e-05}, {100, 1e-05},
		}},
		{"py/exp_v5 state tuning 1 -> 0.01", ScheduleConfig{ExpV5, 1, 0.01, 10, 40}, []lrAt{
			{0, 0.01}, {3, 0.307}, {9, 0.901}, {10, 0.8576958985908941}, {20, 0.18478497974222913},
			{39, 0.010000000000000004}, {40, 0.010000000000000004},
		}},
		{"py/exp_v5 to zero (linear)", ScheduleConfig{ExpV5, 1e-3, 0, 2, 6}, []lrAt{
			{0, 1e-05}, {1, 0.000505}, {2, 0.00075}, {3, 0.0005}, {5, 0},
		}},
		// my_exit_tokens > 0 (ctx 512 tokens a step, exit at step 6): the same values as
		// cosine_v7's "warmup 2 total 6" above.
		{"py/cosine_v7 is RWKV-v5's cosine in tokens", ScheduleConfig{CosineV7, 4e-3, 1e-3, 2, 6}, []lrAt{
			{0, 4e-05}, {1, 0.00202}, {2, 0.004}, {3, 0.0035606601717798215}, {4, 0.0025},
			{5, 0.0014393398282201788}, {6, 0.001},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewSchedule(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				got := s.LR(w.step)
				if math.Abs(got-w.want) > 1e-15*math.Abs(w.want)+1e-20 {
					t.Errorf("LR(%d) = %v, want %v", w.step, got, w.want)
				}
			}
		})
	}
}

func TestScheduleConfigValidate(t *testing.T) {
	ok := ScheduleConfig{Exp, 6e-4, 1e-5, 10, 100}
	tests := []struct {
		name    string
		edit    func(*ScheduleConfig)
		wantKey string // "" for valid
	}{
		{"valid", func(*ScheduleConfig) {}, ""},
		{"total equals warmup", func(c *ScheduleConfig) { c.WarmupSteps = 100 }, ""},
		{"constant without total", func(c *ScheduleConfig) { c.Kind, c.TotalSteps = Constant, 0 }, ""},
		{"zero lr", func(c *ScheduleConfig) { c.LRInit, c.LRFinal = 0, 0 }, ""},
		{"unknown kind", func(c *ScheduleConfig) { c.Kind = "step" }, "optim.schedule"},
		{"empty kind", func(c *ScheduleConfig) { c.Kind = "" }, "optim.schedule"},
		{"negative lr_init", func(c *ScheduleConfig) { c.LRInit = -1e-3 }, "optim.lr_init"},
		{"NaN lr_init", func(c *ScheduleConfig) { c.LRInit = math.NaN() }, "optim.lr_init"},
		{"negative lr_final", func(c *ScheduleConfig) { c.LRFinal = -1 }, "optim.lr_final"},
		{"Inf lr_final", func(c *ScheduleConfig) { c.LRFinal = math.Inf(1) }, "optim.lr_final"},
		{"negative warmup", func(c *ScheduleConfig) { c.WarmupSteps = -1 }, "optim.warmup_steps"},
		{"warmup over total", func(c *ScheduleConfig) { c.WarmupSteps = 101 }, "optim.warmup_steps"},
		{"zero total", func(c *ScheduleConfig) { c.TotalSteps, c.WarmupSteps = 0, 0 }, "optim.total_steps"},
		{"negative total", func(c *ScheduleConfig) { c.TotalSteps = -5 }, "optim.total_steps"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.edit(&c)
			err := c.Validate()
			_, nerr := NewSchedule(c)
			if (err == nil) != (nerr == nil) {
				t.Fatalf("Validate %v, NewSchedule %v", err, nerr)
			}
			switch {
			case tt.wantKey == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.wantKey != "" && err == nil:
				t.Fatalf("Validate() = nil, want error naming %s", tt.wantKey)
			case tt.wantKey != "" && !strings.Contains(err.Error(), tt.wantKey):
				t.Fatalf("Validate() = %v, want it to name %s", err, tt.wantKey)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "optim.total_steps") {
		t.Fatalf("default without total_steps: Validate() = %v, want optim.total_steps error", err)
	}
	c.TotalSteps = 1000
	if err := c.Validate(); err != nil {
		t.Fatalf("default with total_steps: %v", err)
	}
	for _, tt := range []struct {
		key  string
		edit func(*Config)
	}{
		{"optim.beta1", func(c *Config) { c.Beta1 = 1 }},
		{"optim.beta2", func(c *Config) { c.Beta2 = -0.1 }},
		{"optim.adam_eps", func(c *Config) { c.Eps = math.NaN() }},
		{"optim.weight_decay", func(c *Config) { c.WeightDecay = -0.1 }},
		{"optim.grad_clip", func(c *Config) { c.GradClip = -1 }},
		{"optim.lr_init", func(c *Config) { c.LRInit = -1 }},
	} {
		t.Run(tt.key, func(t *testing.T) {
			c := DefaultConfig()
			c.TotalSteps = 1000
			tt.edit(&c)
			if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tt.key) {
				t.Fatalf("Validate() = %v, want error naming %s", err, tt.key)
			}
		})
	}
}
