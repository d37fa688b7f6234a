// Command order prints the arrival order and the node naming of one run of the published
// FGD simulator (hkust-adsl/kubernetes-scheduler-simulator, ATC'23 experiments), so that a
// replay can place exactly the pods it placed, in its order, on its node order. It redoes
// the simulator's use of Go's math/rand, seeded with the experiment's seed:
//
//  1. one Int() (a debug log line's argument);
//  2. the pod list sorted by name, then Shuffle();
//  3. "tune up" to `tune` x GPU capacity: Intn(len(list)) draws appended while the total
//     plus the drawn pod's per-GPU milli stays within the target (the simulator compares the
//     per-GPU milli, not the pod's whole request); or "tune down": Intn() removals while the
//     total exceeds it;
//  4. ten draws by the scheduler's informers (each starts a watch with a random timeout)
//     before the nodes are created; found by matching the published BestFit per seed;
//  5. Perm(len(nodes)): node i (by name) is renamed "%04d-<name>" with perm[i], and the
//     scheduler gives ties to the smallest name.
//
// Usage: go run order.go PODS.csv SEED NODES GPUS [TUNE]
// Output: line 1, the row indices (0-based, in file order) of the pods in arrival order;
// line 2, perm. Only Go's standard library is used.
package main

import (
	"encoding/csv"
	"fmt"
	"math/rand"
	"os"
	"sort"
	"strconv"
	"strings"
)

type pod struct {
	row   int
	name  string
	milli int64 // per GPU
	count int64
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(2)
}

func main() {
	if len(os.Args) < 5 {
		fail(fmt.Errorf("usage: order PODS.csv SEED NODES GPUS [TUNE]"))
	}
	seed, err := strconv.ParseInt(os.Args[2], 10, 64)
	if err != nil {
		fail(err)
	}
	nodes, err := strconv.Atoi(os.Args[3])
	if err != nil {
		fail(err)
	}
	gpus, err := strconv.ParseInt(os.Args[4], 10, 64)
	if err != nil {
		fail(err)
	}
	tune := 1.3
	if len(os.Args) > 5 {
		if tune, err = strconv.ParseFloat(os.Args[5], 64); err != nil {
			fail(err)
		}
	}
	f, err := os.Open(os.Args[1])
	if err != nil {
		fail(err)
	}
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		fail(err)
	}
	col := map[string]int{}
	for i, h := range rows[0] {
		col[h] = i
	}
	var pods []pod
	for i, r := range rows[1:] {
		count, _ := strconv.ParseInt(r[col["num_gpu"]], 10, 64)
		milli, _ := strconv.ParseInt(r[col["gpu_milli"]], 10, 64)
		if count == 0 {
			milli = 0
		}
		pods = append(pods, pod{i, r[col["name"]], milli, count})
	}
	byName := func(ps []pod) {
		sort.Slice(ps, func(i, j int) bool { return ps[i].name < ps[j].name })
	}
	workload := append([]pod(nil), pods...)
	byName(workload)
	arrivals := append([]pod(nil), pods...)
	byName(arrivals)

	r := rand.New(rand.NewSource(seed))
	_ = r.Int()
	r.Shuffle(len(arrivals), func(i, j int) { arrivals[i], arrivals[j] = arrivals[j], arrivals[i] })
	var total int64
	for _, p := range arrivals {
		total += p.milli * p.count
	}
	target := tune * float64(gpus*1000)
	if float64(total) > target {
		for float64(total) > target {
			i := r.Intn(len(arrivals))
			total -= arrivals[i].milli * arrivals[i].count
			arrivals = append(arrivals[:i], arrivals[i+1:]...)
		}
	} else if float64(total) < target {
		for {
			p := workload[r.Intn(len(workload))]
			if float64(total+p.milli) > target {
				break
			}
			total += p.milli * p.count
			arrivals = append(arrivals, p)
		}
	}
	for k := 0; k < 10; k++ {
		_ = r.Float64()
	}
	perm := r.Perm(nodes)

	out := make([]string, len(arrivals))
	for i, p := range arrivals {
		out[i] = strconv.Itoa(p.row)
	}
	fmt.Println(strings.Join(out, ","))
	out = make([]string, len(perm))
	for i, v := range perm {
		out[i] = strconv.Itoa(v)
	}
	fmt.Println(strings.Join(out, ","))
}
