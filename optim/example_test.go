package optim_test

import (
	"fmt"

	"github.com/rwkv-go/rwkv-go/arch"
	"github.com/rwkv-go/rwkv-go/optim"
)

func Example() {
	cfg := optim.DefaultConfig()
	cfg.TotalSteps, cfg.WarmupSteps, cfg.WeightDecay = 100, 10, 0.1
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	sched, _ := optim.NewSchedule(cfg.ScheduleConfig)

	w := []float32{0.5, -0.5, 0.25, 1}
	decay := []float32{1, 2, 3, 4}
	params := []optim.Param[float32]{
		optim.NewParam(arch.X040, "blocks.0.att.key.weight", []int{2, 2}, w, make([]float32, 4), cfg.LayerwiseLR),
		optim.NewParam(arch.X040, "blocks.0.att.time_decay", []int{4}, decay, make([]float32, 4), cfg.LayerwiseLR),
	}
	opt := optim.NewAdamW(params, cfg.AdamWConfig)
	for step := range 3 {
		for _, p := range params { // stand-in for a backward pass
			for i := range p.Grad {
				p.Grad[i] = p.Data[i]
			}
		}
		if bad, ok := optim.AllFinite(params); !ok {
			panic("non-finite gradient in " + bad)
		}
		norm := optim.ClipGlobalNorm(params, cfg.GradClip)
		lr := sched.LR(step)
		opt.Step(lr)
		fmt.Printf("step %d lr %.3g grad norm %.3g\n", step, lr, norm)
	}
	fmt.Println(params[0].LRScale, params[0].Decay, params[1].LRScale, params[1].Decay)
	// Output:
	// step 0 lr 0.00012 grad norm 5.62
	// step 1 lr 0.000168 grad norm 5.62
	// step 2 lr 0.000216 grad norm 5.62
	// 1 true 2 false
}
