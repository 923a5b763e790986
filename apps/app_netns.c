/* app_netns.c - create, enter and delete our network namespace. */
#define _GNU_SOURCE
#include "app_netns.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int run_wait(char *const argv[])
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        execvp(argv[0], argv);
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int app_netns_create_enter(const char *name, char *err, size_t errlen)
{
    char path[256];
    snprintf(path, sizeof(path), "/run/netns/%s", name);
    struct stat stbuf;
    if (stat(path, &stbuf) == 0) {
        snprintf(err, errlen,
                 "network namespace '%s' already exists (a previous run died?): "
                 "remove it with 'ip netns del %s' or pick --netns",
                 name, name);
        return -1;
    }
    char *add[] = {"ip", "netns", "add", (char *)name, NULL};
    if (run_wait(add) != 0) {
        snprintf(err, errlen, "'ip netns add %s' failed (needs root and iproute2)", name);
        return -1;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || setns(fd, CLONE_NEWNET) < 0) {
        snprintf(err, errlen, "enter namespace %s: %s", name, strerror(errno));
        if (fd >= 0)
            close(fd);
        app_netns_delete(name);
        return -1;
    }
    close(fd);
    /* The wire is IPv4 only: without this the kernel sends IPv6 router
       solicitations through the TUN device, which the NIC counts as
       malformed (not IPv4). Devices created from now on inherit "default".
       Best effort: a kernel without IPv6 has no such files. */
    static const char *const no_v6[] = {"/proc/sys/net/ipv6/conf/default/disable_ipv6",
                                        "/proc/sys/net/ipv6/conf/all/disable_ipv6"};
    for (size_t i = 0; i < sizeof(no_v6) / sizeof(no_v6[0]); i++) {
        int sfd = open(no_v6[i], O_WRONLY | O_CLOEXEC);
        if (sfd >= 0) {
            if (write(sfd, "1", 1) != 1) {
                /* IPv6 stays on; only the counter sees it */
            }
            close(sfd);
        }
    }
    /* lo up, so clients inside may also use 127.0.0.1 for other things. */
    int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (sock >= 0) {
        struct ifreq ifr;
        memset(&ifr, 0, sizeof(ifr));
        snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
        if (ioctl(sock, SIOCGIFFLAGS, &ifr) == 0) {
            ifr.ifr_flags |= IFF_UP;
            ioctl(sock, SIOCSIFFLAGS, &ifr);
        }
        close(sock);
    }
    return 0;
}

static char crash_ns[64];

/* Only async-signal-safe calls: fork, execve, waitpid, signal, raise. */
static void crash_handler(int sig)
{
    pid_t pid = fork();
    if (pid == 0) {
        char *const argv[] = {"ip", "netns", "del", crash_ns, NULL};
        char *const envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL};
        execve("/usr/sbin/ip", argv, envp);
        execve("/sbin/ip", argv, envp);
        _exit(127);
    }
    if (pid > 0)
        waitpid(pid, NULL, 0);
    signal(sig, SIG_DFL);
    raise(sig);
}

void app_netns_cleanup_on_crash(const char *name)
{
    snprintf(crash_ns, sizeof(crash_ns), "%s", name);
    static const int sigs[] = {SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL};
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        signal(sigs[i], crash_handler);
}

void app_netns_delete(const char *name)
{
    char *del[] = {"ip", "netns", "del", (char *)name, NULL};
    run_wait(del);
}

int app_netns_run_here(char *const argv[])
{
    return run_wait(argv);
}
