#include "app_bench.h"
#include <stdio.h>
int app_bench_main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "anic bench: under construction\n");
    return 1;
}
