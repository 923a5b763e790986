/*
 * app_netns.h - the private network namespace every TUN user lives in
 * (network safety rule: created by us, holds only lo and our TUN, deleted
 * afterwards). Uses iproute2's named namespaces (/run/netns/NAME).
 */
#ifndef ANIC_APP_NETNS_H
#define ANIC_APP_NETNS_H

#include <stddef.h>

/* `ip netns add name`, then move the calling thread into it and bring lo up.
   Call before any thread is created: threads inherit it. Fails if the
   namespace already exists (we never reuse one we did not create). */
int app_netns_create_enter(const char *name, char *err, size_t errlen);
/* If the process dies of a fatal signal (SIGSEGV, SIGABRT, ...), delete
   the namespace first, then die as before: a crash leaves nothing behind. */
void app_netns_cleanup_on_crash(const char *name);
/* `ip netns del name`. */
void app_netns_delete(const char *name);
/* Run argv in the calling thread's current namespace; returns the exit status. */
int app_netns_run_here(char *const argv[]);

#endif
