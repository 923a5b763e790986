/*
 * test_hygiene.c - Check suite for the files tls_server_new() writes: the
 * generated CA (--ca-out) and the NSS key log (--keylog). Each test works in
 * its own fresh directory (mkdtemp), plants what an attacker could (a
 * symlink to a victim file, a file of the wrong mode, a hard link, a FIFO)
 * and checks the real outcome: file contents, modes, link counts, the
 * error text.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tls_server.h"

#define VICTIM_TEXT "victim: must stay as it is\n"

static char dir[256];
static char err[512];

static void setup(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof(dir), "%s/anic-hygiene-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    err[0] = '\0';
}

/* Remove what the tests made: the directory holds only their files. */
static void teardown(void)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char p[512];
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
            if (unlink(p) != 0)
                rmdir(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

static const char *path(const char *name)
{
    static char bufs[4][512];
    static int i;
    char *p = bufs[i++ % 4];
    snprintf(p, 512, "%s/%s", dir, name);
    return p;
}

static void write_text(const char *p, const char *text, mode_t mode)
{
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, mode);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, strlen(text)), (int)strlen(text));
    ck_assert_int_eq(fchmod(fd, mode), 0); /* regardless of the umask */
    close(fd);
}

/* The whole file (up to 16 KiB) as a string. */
static const char *read_text(const char *p)
{
    static char buf[16384];
    int fd = open(p, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    ck_assert_int_ge(n, 0);
    buf[n] = '\0';
    return buf;
}

static int entries(void)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

static struct tls_server *server(const char *ca_out, const char *keylog)
{
    struct tls_server_cfg cfg = {
        .ca_out_path = ca_out, .server_ip = htonl(0x0a4d0002), .keylog_path = keylog};
    return tls_server_new(&cfg, err, sizeof(err));
}

/* A symlink planted at the CA path: the CA replaces the link, the file it
   pointed to is untouched, no temporary file is left behind. */
START_TEST(ca_out_symlink_replaced_not_followed)
{
    write_text(path("victim"), VICTIM_TEXT, 0644);
    ck_assert_int_eq(symlink(path("victim"), path("ca.pem")), 0);
    struct tls_server *s = server(path("ca.pem"), NULL);
    ck_assert_msg(s != NULL, "tls_server_new: %s", err);
    tls_server_free(s);
    ck_assert_str_eq(read_text(path("victim")), VICTIM_TEXT);
    struct stat st;
    ck_assert_int_eq(lstat(path("ca.pem"), &st), 0);
    ck_assert(S_ISREG(st.st_mode));
    ck_assert_int_eq(st.st_mode & 07777, 0644);
    ck_assert_ptr_nonnull(strstr(read_text(path("ca.pem")), "-----BEGIN CERTIFICATE-----"));
    ck_assert_int_eq(entries(), 2); /* victim, ca.pem */
}
END_TEST

/* An existing CA file is replaced whole (a new inode), not rewritten in place. */
START_TEST(ca_out_existing_file_replaced)
{
    write_text(path("ca.pem"), VICTIM_TEXT, 0600);
    ck_assert_int_eq(link(path("ca.pem"), path("other-name")), 0);
    struct tls_server *s = server(path("ca.pem"), NULL);
    ck_assert_msg(s != NULL, "tls_server_new: %s", err);
    tls_server_free(s);
    ck_assert_str_eq(read_text(path("other-name")), VICTIM_TEXT); /* the old inode */
    ck_assert_ptr_nonnull(strstr(read_text(path("ca.pem")), "-----BEGIN CERTIFICATE-----"));
    ck_assert_int_eq(entries(), 2);
}
END_TEST

/* Where the CA cannot be put: a clear error, nothing left behind. */
START_TEST(ca_out_errors_are_clear)
{
    ck_assert_int_eq(mkdir(path("a-dir"), 0755), 0);
    ck_assert_ptr_null(server(path("a-dir"), NULL));
    ck_assert_msg(strstr(err, "rename") && strstr(err, path("a-dir")), "error: %s", err);
    ck_assert_int_eq(entries(), 1);
    ck_assert_ptr_null(server(path("missing/ca.pem"), NULL));
    ck_assert_msg(strstr(err, "No such file or directory") && strstr(err, "missing/ca.pem"),
                  "error: %s", err);
    ck_assert_int_eq(entries(), 1);
}
END_TEST

/* A new key log is created 0600, whatever the umask allows. */
START_TEST(keylog_created_0600)
{
    mode_t old = umask(0);
    struct tls_server *s = server(path("ca.pem"), path("keys.log"));
    umask(old);
    ck_assert_msg(s != NULL, "tls_server_new: %s", err);
    tls_server_free(s);
    struct stat st;
    ck_assert_int_eq(lstat(path("keys.log"), &st), 0);
    ck_assert(S_ISREG(st.st_mode));
    ck_assert_int_eq(st.st_mode & 07777, 0600);
}
END_TEST

/* An existing key log with a wider mode is narrowed to 0600 and appended
   to (its lines are kept). */
START_TEST(keylog_existing_narrowed_to_0600)
{
    write_text(path("keys.log"), "CLIENT_RANDOM earlier line\n", 0644);
    struct tls_server *s = server(path("ca.pem"), path("keys.log"));
    ck_assert_msg(s != NULL, "tls_server_new: %s", err);
    tls_server_free(s);
    struct stat st;
    ck_assert_int_eq(stat(path("keys.log"), &st), 0);
    ck_assert_int_eq(st.st_mode & 07777, 0600);
    ck_assert_str_eq(read_text(path("keys.log")), "CLIENT_RANDOM earlier line\n");
}
END_TEST

/* A symlink at the key log path is refused with a clear error; its target
   (and a dangling link's would-be target) stay as they are. */
START_TEST(keylog_symlink_refused)
{
    write_text(path("victim"), VICTIM_TEXT, 0644);
    ck_assert_int_eq(symlink(path("victim"), path("keys.log")), 0);
    ck_assert_ptr_null(server(path("ca.pem"), path("keys.log")));
    ck_assert_msg(strstr(err, "symbolic link") && strstr(err, path("keys.log")), "error: %s", err);
    ck_assert_str_eq(read_text(path("victim")), VICTIM_TEXT);
    struct stat st;
    ck_assert_int_eq(stat(path("victim"), &st), 0);
    ck_assert_int_eq(st.st_mode & 07777, 0644);

    ck_assert_int_eq(symlink(path("not-there"), path("dangling.log")), 0);
    ck_assert_ptr_null(server(path("ca.pem"), path("dangling.log")));
    ck_assert_msg(strstr(err, "symbolic link"), "error: %s", err);
    ck_assert_int_eq(access(path("not-there"), F_OK), -1);
}
END_TEST

/* A hard link (another name for someone's file) and a FIFO are refused,
   without blocking on the FIFO. */
START_TEST(keylog_hard_link_and_fifo_refused)
{
    write_text(path("victim"), VICTIM_TEXT, 0600);
    ck_assert_int_eq(link(path("victim"), path("keys.log")), 0);
    ck_assert_ptr_null(server(path("ca.pem"), path("keys.log")));
    ck_assert_msg(strstr(err, "hard link"), "error: %s", err);
    ck_assert_str_eq(read_text(path("victim")), VICTIM_TEXT);

    ck_assert_int_eq(mkfifo(path("fifo.log"), 0600), 0);
    ck_assert_ptr_null(server(path("ca.pem"), path("fifo.log")));
    ck_assert_msg(strstr(err, "not a regular file"), "error: %s", err);
}
END_TEST

static Suite *hygiene_suite(void)
{
    Suite *s = suite_create("hygiene");
    TCase *ca = tcase_create("ca_out");
    tcase_add_checked_fixture(ca, setup, teardown);
    tcase_add_test(ca, ca_out_symlink_replaced_not_followed);
    tcase_add_test(ca, ca_out_existing_file_replaced);
    tcase_add_test(ca, ca_out_errors_are_clear);
    suite_add_tcase(s, ca);
    TCase *kl = tcase_create("keylog");
    tcase_add_checked_fixture(kl, setup, teardown);
    tcase_add_test(kl, keylog_created_0600);
    tcase_add_test(kl, keylog_existing_narrowed_to_0600);
    tcase_add_test(kl, keylog_symlink_refused);
    tcase_add_test(kl, keylog_hard_link_and_fifo_refused);
    suite_add_tcase(s, kl);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(hygiene_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
