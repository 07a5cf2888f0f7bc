/*
 * dockyard-runtime's native front: `state`, `start`, `kill` (of one process) and `delete` of a
 * stopped container without starting a Python interpreter; every other command line is handed, unchanged, to
 * the Python runtime (execv of its launcher script).
 *
 * Why it exists: these verbs do almost nothing (read a file, look at /proc, open a FIFO,
 * rmdir a few cgroups), yet a container manager calls each of them once or more per
 * container. CPython needs ~6 ms to start on the machines we measure, more than runc takes
 * for the whole verb. Everything here works from `<root>/<id>/front`, a line-oriented
 * summary that the Python runtime writes beside state.json each time it saves a state
 * (dockyard.runtime.front documents the format). Whenever something is not exactly the
 * simple case -- no front file, an unknown flag, hooks to run, a container that is not in
 * the state the verb needs, a cgroup that will not go away, any unexpected error before
 * a side effect -- the front hands over to Python, which re-checks under the same lock and
 * produces the same errors as always. So the front never has to reproduce an error path
 * it did not cause itself.
 *
 * It never enters a container's namespaces and runs no container code. It marks itself
 * non-dumpable, so even a process that shares the host PID namespace cannot open its
 * /proc/<pid>/exe without CAP_SYS_PTRACE (CVE-2019-5736 class).
 *
 * Built by scripts/setup.sh:
 *   cc -O2 -DDOCKYARD_LAUNCHER='"<path of the Python launcher>"' -o dockyard-runtime runtime_front.c
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <strings.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef DOCKYARD_LAUNCHER
#error "define DOCKYARD_LAUNCHER as the path of the Python launcher script"
#endif

#define FRONT_VERSION "dockyard-front 1"
#define DEFAULT_ROOT "/run/dockyard-runtime"
#define MAX_CGROUPS 32
#define MAX_FRONT (1 << 20)

/* found by dockyard.shim.inproc in the executable's bytes: this file is dockyard-runtime */
__attribute__((used)) static const char front_mark[] = "dockyard-runtime-native-front launcher=" DOCKYARD_LAUNCHER;

static char **saved_argv;
static const char *log_path;
static int log_json;

/* Hand the whole command line to the Python runtime. Does not return. */
static void __attribute__((noreturn)) hand_over(void)
{
    execv(DOCKYARD_LAUNCHER, saved_argv);
    fprintf(stderr, "dockyard-runtime: cannot run %s: %s\n", DOCKYARD_LAUNCHER, strerror(errno));
    exit(127);
}

/* ------------------------------------------------------------------ errors, as the Python CLI logs them */

static void json_escape(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p;
        if (c == '"' || c == '\\') {
            fprintf(f, "\\%c", c);
            p++;
        } else if (c == '\n' || c == '\t' || c == '\r' || c == '\b' || c == '\f') {
            fputc('\\', f);
            fputc(c == '\n' ? 'n' : c == '\t' ? 't' : c == '\r' ? 'r' : c == '\b' ? 'b' : 'f', f);
            p++;
        } else if (c < 0x20 || c == 0x7f) {
            fprintf(f, "\\u%04x", c);
            p++;
        } else if (c < 0x80) {
            fputc((int)c, f);
            p++;
        } else {
            /* UTF-8 to \uXXXX (ASCII-safe like the Python logger); invalid bytes become U+FFFD */
            unsigned cp = 0xfffd;
            int len = 1;
            if ((c & 0xe0) == 0xc0 && (p[1] & 0xc0) == 0x80) {
                cp = ((c & 0x1f) << 6) | (p[1] & 0x3f);
                len = 2;
            } else if ((c & 0xf0) == 0xe0 && (p[1] & 0xc0) == 0x80 && (p[2] & 0xc0) == 0x80) {
                cp = ((c & 0x0f) << 12) | ((p[1] & 0x3f) << 6) | (p[2] & 0x3f);
                len = 3;
            } else if ((c & 0xf8) == 0xf0 && (p[1] & 0xc0) == 0x80 && (p[2] & 0xc0) == 0x80 &&
                       (p[3] & 0xc0) == 0x80) {
                cp = ((c & 0x07) << 18) | ((p[1] & 0x3f) << 12) | ((p[2] & 0x3f) << 6) | (p[3] & 0x3f);
                len = 4;
            }
            if (cp >= 0x10000) {
                cp -= 0x10000;
                fprintf(f, "\\u%04x\\u%04x", 0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff));
            } else {
                fprintf(f, "\\u%04x", cp);
            }
            p += len;
        }
    }
}

static int __attribute__((format(printf, 1, 2))) fail(const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (log_path) {
        FILE *f = fopen(log_path, "ae");
        if (f) {
            char now[32];
            time_t t = time(NULL);
            struct tm tm;
            strftime(now, sizeof now, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
            if (log_json) {
                fputs("{\"level\":\"error\",\"msg\":\"", f);
                json_escape(f, msg);
                fprintf(f, "\",\"time\":\"%s\"}\n", now);
            } else {
                fprintf(f, "time=\"%s\" level=error msg=\"%s\"\n", now, msg);
            }
            fclose(f);
        }
    }
    fprintf(stderr, "dockyard-runtime: %s\n", msg);
    return 1;
}

/* ------------------------------------------------------------------ the front file */

struct front {
    long pid;
    unsigned long long pid_start;
    int poststart, poststop;
    char freezer_kind[8]; /* "v1", "v2" or "none" */
    char *freezer_dir;
    char *cgroups[MAX_CGROUPS];
    int ncgroups;
    char *head, *tail;
    char *buf; /* owns everything above */
};

/* The next line of buf (NUL-terminated in place), or NULL at the end. */
static char *next_line(char **cursor, char *end)
{
    char *line = *cursor, *nl;
    if (line >= end)
        return NULL;
    nl = memchr(line, '\n', (size_t)(end - line));
    if (!nl)
        return NULL;
    *nl = '\0';
    *cursor = nl + 1;
    return line;
}

/* A length-prefixed block after "<key> <len>": returns it NUL-terminated, or NULL. */
static char *block(char **cursor, char *end, const char *key)
{
    char *line = next_line(cursor, end), *stop;
    size_t klen = strlen(key);
    unsigned long len;
    char *data;
    if (!line || strncmp(line, key, klen) != 0 || line[klen] != ' ')
        return NULL;
    if (line[klen + 1] < '0' || line[klen + 1] > '9')
        return NULL;
    errno = 0;
    len = strtoul(line + klen + 1, &stop, 10);
    if (errno || *stop || len >= (size_t)(end - *cursor) || (*cursor)[len] != '\n')
        return NULL;
    data = *cursor;
    data[len] = '\0';
    *cursor += len + 1;
    return data;
}

static int parse_number(const char *text, unsigned long long *out)
{
    char *stop;
    if (*text < '0' || *text > '9')
        return -1;
    errno = 0;
    *out = strtoull(text, &stop, 10);
    return (errno || *stop) ? -1 : 0;
}

/* 0 and *fr filled, or -1 if the file is missing or not exactly what we understand. */
static int read_front(int dirfd, struct front *fr)
{
    char *buf, *cursor, *end, *line;
    ssize_t n, total = 0;
    unsigned long long number;
    int fd = openat(dirfd, "front", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    buf = malloc(MAX_FRONT + 1);
    if (!buf) {
        close(fd);
        return -1;
    }
    while ((n = read(fd, buf + total, (size_t)(MAX_FRONT - total))) > 0)
        total += n;
    close(fd);
    if (n < 0 || total >= MAX_FRONT)
        goto bad;
    memset(fr, 0, sizeof *fr);
    fr->buf = buf;
    cursor = buf;
    end = buf + total;
    line = next_line(&cursor, end);
    if (!line || strcmp(line, FRONT_VERSION) != 0)
        goto bad;
    if (!(line = next_line(&cursor, end)) || strncmp(line, "pid ", 4) || parse_number(line + 4, &number) ||
        number > INT_MAX)
        goto bad;
    fr->pid = (long)number;
    if (!(line = next_line(&cursor, end)) || strncmp(line, "pid_start ", 10) ||
        parse_number(line + 10, &fr->pid_start))
        goto bad;
    if (!(line = next_line(&cursor, end)) || strncmp(line, "hooks", 5) || (line[5] != '\0' && line[5] != ' '))
        goto bad;
    for (char *word = strtok(line + 5, " "); word; word = strtok(NULL, " ")) {
        if (!strcmp(word, "poststart"))
            fr->poststart = 1;
        else if (!strcmp(word, "poststop"))
            fr->poststop = 1;
    }
    if (!(line = next_line(&cursor, end)) || strncmp(line, "freezer ", 8))
        goto bad;
    line += 8;
    if (!strncmp(line, "none", 4) && line[4] == '\0') {
        strcpy(fr->freezer_kind, "none");
    } else if ((!strncmp(line, "v1 /", 4) || !strncmp(line, "v2 /", 4))) {
        memcpy(fr->freezer_kind, line, 2);
        fr->freezer_dir = line + 3;
    } else {
        goto bad;
    }
    while ((line = next_line(&cursor, end)) && !strncmp(line, "cgroup ", 7)) {
        if (fr->ncgroups == MAX_CGROUPS || line[7] != '/')
            goto bad;
        fr->cgroups[fr->ncgroups++] = line + 7;
    }
    if (!line || strcmp(line, "state") != 0)
        goto bad;
    if (!(fr->head = block(&cursor, end, "head")) || !(fr->tail = block(&cursor, end, "tail")))
        goto bad;
    if (!(line = next_line(&cursor, end)) || strcmp(line, "end") != 0 || cursor != end)
        goto bad;
    return 0;
bad:
    free(buf);
    return -1;
}

/* ------------------------------------------------------------------ status, as dockyard.runtime.state derives it */

enum status { CREATED, RUNNING, PAUSED, STOPPED, UNKNOWN };
static const char *const status_names[] = {"created", "running", "paused", "stopped"};

/* The start of a small file (a /proc or cgroup file), NUL-terminated: its length, or -1 with
   errno set (0 for an empty file). */
static ssize_t read_small(const char *path, char *buf, size_t size)
{
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    n = read(fd, buf, size - 1);
    close(fd);
    if (n >= 0)
        buf[n] = '\0';
    return n;
}

/* Whether the init is the same live process (not gone, not a zombie, not a reused pid). */
static int init_alive(const struct front *fr)
{
    char path[64], buf[1024], *p;
    unsigned long long start;
    int field;
    if (fr->pid <= 0)
        return 0;
    snprintf(path, sizeof path, "/proc/%ld/stat", fr->pid);
    if (read_small(path, buf, sizeof buf) <= 0)
        return 0;
    p = strrchr(buf, ')');
    if (!p || p[1] != ' ' || !p[2])
        return 0;
    p += 2;
    if (*p == 'Z' || *p == 'X')
        return 0;
    /* the state is field 3; the start time is field 22 */
    for (field = 3; field < 22; field++) {
        p = strchr(p, ' ');
        if (!p)
            return 0;
        p++;
    }
    errno = 0;
    start = strtoull(p, NULL, 10);
    return errno == 0 && start == fr->pid_start;
}

/* 1 frozen, 0 not, -1 cannot tell here */
static int frozen(const struct front *fr)
{
    char path[PATH_MAX], buf[32];
    ssize_t n;
    if (!strcmp(fr->freezer_kind, "none"))
        return 0;
    if ((size_t)snprintf(path, sizeof path, "%s/%s", fr->freezer_dir,
                         strcmp(fr->freezer_kind, "v2") ? "freezer.self_freezing" : "cgroup.freeze") >= sizeof path)
        return -1;
    n = read_small(path, buf, sizeof buf);
    if (n < 0)
        return (errno == ENOENT && !strcmp(fr->freezer_kind, "v2")) ? 0 : -1;
    if (n == 0)
        return -1;
    if (buf[0] == '1' && (buf[1] == '\n' || buf[1] == '\0'))
        return 1;
    if (buf[0] == '0' && (buf[1] == '\n' || buf[1] == '\0'))
        return 0;
    return -1;
}

static enum status status_of(int dirfd, const struct front *fr)
{
    struct stat sb;
    int is_frozen;
    if (!init_alive(fr))
        return STOPPED;
    is_frozen = frozen(fr);
    if (is_frozen < 0)
        return UNKNOWN;
    if (is_frozen)
        return PAUSED;
    if (fstatat(dirfd, "exec.fifo", &sb, AT_SYMLINK_NOFOLLOW) == 0)
        return CREATED;
    return errno == ENOENT ? RUNNING : UNKNOWN;
}

/* ------------------------------------------------------------------ the verbs */

static int open_container(const char *root, const char *id)
{
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", root, id) >= sizeof path)
        return -1;
    return open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

static int verb_state(const char *root, const char *id)
{
    struct front fr;
    enum status s;
    int dirfd = open_container(root, id);
    if (dirfd < 0 || read_front(dirfd, &fr) < 0)
        hand_over();
    s = status_of(dirfd, &fr);
    if (s == UNKNOWN)
        hand_over();
    printf("%s  \"pid\": %ld,\n  \"status\": \"%s\",\n%s\n", fr.head, s == STOPPED ? 0L : fr.pid,
           status_names[s], fr.tail);
    return fflush(stdout) == 0 ? 0 : 1;
}

static int verb_start(const char *root, const char *id)
{
    struct front fr;
    int dirfd = open_container(root, id), fifo;
    char byte;
    if (dirfd < 0 || flock(dirfd, LOCK_EX) < 0 || read_front(dirfd, &fr) < 0 || fr.poststart ||
        status_of(dirfd, &fr) != CREATED)
        hand_over();
    fifo = openat(dirfd, "exec.fifo", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fifo < 0)
        hand_over();
    /* the init writes one byte once it sees a reader; fail if it dies instead */
    for (;;) {
        struct pollfd pfd = {.fd = fifo, .events = POLLIN};
        int ready = poll(&pfd, 1, 50);
        if (ready > 0) {
            ssize_t n = read(fifo, &byte, 1);
            if (n == 1)
                break;
            if (n == 0)
                usleep(10000); /* a writer came and went without its byte: do not spin on the hang-up */
            else if (errno != EAGAIN && errno != EINTR)
                return fail("%s: %s/%s/exec.fifo", strerror(errno), root, id);
        }
        if (ready < 0 && errno != EINTR)
            return fail("poll: %s", strerror(errno));
        if (!init_alive(&fr))
            return fail("container %s: the init process exited before it could start", id);
    }
    close(fifo);
    if (unlinkat(dirfd, "exec.fifo", 0) < 0)
        return fail("%s: %s/%s/exec.fifo", strerror(errno), root, id);
    return 0;
}

/* rm -r of the container's directory, which holds only flat files: 0, -1 to hand over (state.json
   is still there), or 1 once the error is reported (state.json is gone: Python would not find it) */
static int remove_container_dir(const char *root, const char *id, int dirfd)
{
    int fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0), rootfd;
    DIR *dir;
    struct dirent *e;
    if (fd < 0)
        return -1;
    if (!(dir = fdopendir(fd))) {
        close(fd);
        return -1;
    }
    while ((e = readdir(dir)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || !strcmp(e->d_name, "state.json"))
            continue;
        if (unlinkat(dirfd, e->d_name, 0) < 0 && errno != ENOENT) {
            closedir(dir);
            return -1;
        }
    }
    closedir(dir);
    /* state.json last: until it goes, a hand-over finds the container as it was */
    rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0 || (unlinkat(dirfd, "state.json", 0) < 0 && errno != ENOENT)) {
        if (rootfd >= 0)
            close(rootfd);
        return -1;
    }
    if (unlinkat(rootfd, id, AT_REMOVEDIR) < 0 && errno != ENOENT) {
        fail("%s: %s/%s", strerror(errno), root, id);
        close(rootfd);
        return 1;
    }
    close(rootfd);
    return 0;
}

static int verb_delete(const char *root, const char *id)
{
    struct front fr;
    int i, dirfd = open_container(root, id);
    if (dirfd < 0 || flock(dirfd, LOCK_EX) < 0 || read_front(dirfd, &fr) < 0 || fr.poststop ||
        status_of(dirfd, &fr) != STOPPED)
        hand_over();
    /* an empty cgroup goes with one rmdir; anything else (processes left behind, sub-cgroups)
       is the Python runtime's work, which kills and retries -- and finds these already gone */
    for (i = 0; i < fr.ncgroups; i++)
        if (rmdir(fr.cgroups[i]) < 0 && errno != ENOENT)
            hand_over();
    switch (remove_container_dir(root, id, dirfd)) {
    case 0:
        return 0;
    case 1:
        return 1;
    default:
        hand_over();
    }
}

static int verb_kill(const char *root, const char *id, int sig)
{
    struct front fr;
    enum status s;
    int pidfd, dirfd = open_container(root, id);
    if (dirfd < 0 || read_front(dirfd, &fr) < 0)
        hand_over();
    s = status_of(dirfd, &fr);
    if (s != CREATED && s != RUNNING && s != PAUSED)
        hand_over();
    /* through a pidfd taken before the start time is checked again: a pid reused after the
       status check is never signalled */
    pidfd = (int)syscall(SYS_pidfd_open, (pid_t)fr.pid, 0);
    if (pidfd < 0) {
        if (errno == ESRCH) /* gone meanwhile: as a signal to a process that just exited */
            return 0;
        hand_over(); /* e.g. no pidfd_open on this kernel */
    }
    if (init_alive(&fr) && syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) < 0 && errno != ESRCH)
        hand_over();
    close(pidfd);
    return 0;
}

/* ------------------------------------------------------------------ command line */

static const struct {
    const char *name;
    int number;
} signals[] = {
    {"HUP", SIGHUP},   {"INT", SIGINT},       {"QUIT", SIGQUIT},   {"ILL", SIGILL},     {"TRAP", SIGTRAP},
    {"ABRT", SIGABRT}, {"IOT", SIGIOT},       {"BUS", SIGBUS},     {"FPE", SIGFPE},     {"KILL", SIGKILL},
    {"USR1", SIGUSR1}, {"SEGV", SIGSEGV},     {"USR2", SIGUSR2},   {"PIPE", SIGPIPE},   {"ALRM", SIGALRM},
    {"TERM", SIGTERM}, {"STKFLT", SIGSTKFLT}, {"CHLD", SIGCHLD},   {"CLD", SIGCHLD},    {"CONT", SIGCONT},
    {"STOP", SIGSTOP}, {"TSTP", SIGTSTP},     {"TTIN", SIGTTIN},   {"TTOU", SIGTTOU},   {"URG", SIGURG},
    {"XCPU", SIGXCPU}, {"XFSZ", SIGXFSZ},     {"VTALRM", SIGVTALRM}, {"PROF", SIGPROF}, {"WINCH", SIGWINCH},
    {"IO", SIGIO},     {"POLL", SIGPOLL},     {"PWR", SIGPWR},     {"SYS", SIGSYS},
};

/* A signal as the Python CLI's parse_signal reads it (a number, or a name with or without SIG),
   or 0 for what is left to it (unknown names, realtime names, odd numbers). */
static int signal_number(const char *text)
{
    size_t i;
    if (*text >= '0' && *text <= '9') {
        char *stop;
        long n = strtol(text, &stop, 10);
        return (*stop || n < 1 || n > 31) ? 0 : (int)n;
    }
    if (!strncasecmp(text, "SIG", 3))
        text += 3;
    for (i = 0; i < sizeof signals / sizeof signals[0]; i++)
        if (!strcasecmp(text, signals[i].name))
            return signals[i].number;
    return 0;
}

static const char no_value[] = "";

/* "--name", "-name" (no_value), "--name=value", "-name=value" (value), or NULL if arg is not it */
static const char *flag_value(const char *arg, const char *name)
{
    size_t len = strlen(name);
    if (arg[0] != '-')
        return NULL;
    arg += (arg[1] == '-') ? 2 : 1;
    if (strncmp(arg, name, len) != 0)
        return NULL;
    if (arg[len] == '\0')
        return no_value;
    return arg[len] == '=' ? arg + len + 1 : NULL;
}

/* An absolute path that os.path.abspath leaves as it is: no empty, "." or ".." component and no
   trailing slash (the kernel resolves ".." through symlinks, abspath by text). */
static int plain_root(const char *root)
{
    const char *p = root;
    if (root[0] != '/' || !root[1])
        return 0;
    while (*p) {
        const char *start = ++p; /* after a '/' */
        size_t len = strcspn(start, "/");
        if (len == 0 || (len == 1 && start[0] == '.') || (len == 2 && start[0] == '.' && start[1] == '.'))
            return 0;
        p = start + len;
    }
    return 1;
}

static int valid_id(const char *id)
{
    const char *p;
    /* an id that looks like a flag is read as one by the Python parser: leave it to that */
    if (!*id || *id == '-' || !strcmp(id, ".") || !strcmp(id, "..") || strlen(id) > 255)
        return 0;
    for (p = id; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              strchr("_+-.", *p)))
            return 0;
    return 1;
}

int main(int argc, char **argv)
{
    const char *root = DEFAULT_ROOT, *value, *cmd, *id;
    int i = 1;
    saved_argv = argv;
    (void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    (void)signal(SIGPIPE, SIG_IGN); /* as Python: a closed stdout is a write error, not a kill */
    /* global flags: only those that change nothing here; any other hands over */
    while (i < argc && argv[i][0] == '-') {
        const char **dest = NULL;
        if ((value = flag_value(argv[i], "root")))
            dest = &root;
        else if ((value = flag_value(argv[i], "log")))
            dest = &log_path;
        else if ((value = flag_value(argv[i], "log-format")))
            dest = &cmd; /* checked below */
        else
            hand_over();
        if (value == no_value) {
            if (i + 1 >= argc)
                hand_over();
            value = argv[++i];
        }
        if (dest == &cmd) {
            if (!strcmp(value, "json"))
                log_json = 1;
            else if (strcmp(value, "text") != 0)
                hand_over();
        } else {
            *dest = value;
        }
        i++;
    }
    if (!plain_root(root) || i >= argc)
        hand_over();
    cmd = argv[i++];
    /* delete's --force matters only for a container that is not stopped, which is handed over */
    if (!strcmp(cmd, "delete"))
        while (i < argc && (!strcmp(argv[i], "-f") || !strncmp(argv[i], "-f=", 3) || flag_value(argv[i], "force")))
            i++;
    if (!strcmp(cmd, "kill") && i + 2 == argc && argv[i][0] != '-') {
        int sig = signal_number(argv[i + 1]);
        if (!sig || !valid_id(argv[i]))
            hand_over();
        return verb_kill(root, argv[i], sig);
    }
    if (i + 1 != argc)
        hand_over();
    id = argv[i];
    if (!valid_id(id))
        hand_over();
    if (!strcmp(cmd, "kill"))
        return verb_kill(root, id, SIGTERM);
    if (!strcmp(cmd, "state"))
        return verb_state(root, id);
    if (!strcmp(cmd, "start"))
        return verb_start(root, id);
    if (!strcmp(cmd, "delete"))
        return verb_delete(root, id);
    hand_over();
}
