/* bench.h - `anic bench`: one run, every mode side by side; a TX loss
   sweep; a microbenchmark of the NIC engine alone (bench_micro.c). */
#ifndef ANIC_BENCH_H
#define ANIC_BENCH_H

#include <stdint.h>

int bench_main(int argc, char **argv);

/* `anic bench --micro`: the NIC engine driven from the calling thread (no
   wire, no TUN, no namespace), record_bytes of 16 KiB TLS records per run,
   each run repeated `repeat` times (median shown). Prints its report on
   stdout; returns an exit status (0 ok, 1 failure, 128+signal). */
int bench_micro_run(uint64_t record_bytes, unsigned repeat, uint32_t mtu);

/* `anic bench --host-instr` (bench_instr.c): each of the n_modes modes
   (names as --modes takes them) downloads and uploads size bytes once under
   valgrind's callgrind; prints host instructions per byte and their ratio
   to plain. Returns an exit status (0 ok, 1 a run failed). */
int bench_instr_run(const char *const *modes, unsigned n_modes, uint64_t size);

#endif
