/* app_bench.h - `anic bench`: one run, every mode side by side. */
#ifndef ANIC_APP_BENCH_H
#define ANIC_APP_BENCH_H

int app_bench_main(int argc, char **argv);

#endif
