/*
 * appliance-nodump.so: loaded into llama-server with LD_PRELOAD by the
 * appliance (engine/llama_server.py), it runs before llama-server's main().
 *
 * execve makes every new process dumpable again: until it says otherwise,
 * any process of the same user may read its memory and open its files
 * through /proc. So before llama-server may hold the model (plaintext
 * weights from a sealed file) or any prompt, this constructor
 *
 *   1. turns off core files (RLIMIT_CORE 0) and makes the process
 *      non-dumpable (PR_SET_DUMPABLE 0), with no new privileges;
 *   2. says "hardened" on the socket the appliance left open for it
 *      (its number in APPLIANCE_MODEL_CHANNEL);
 *   3. receives the model's file descriptor over that socket (SCM_RIGHTS),
 *      with those of its LoRA adapters if any, and moves each to the number
 *      that `-m /proc/self/fd/N` (`--lora /proc/self/fd/N`) names: the list
 *      in APPLIANCE_MODEL_FD, model first;
 *   4. closes the socket and forgets its variables and LD_PRELOAD, so that
 *      nothing llama-server might start inherits any of it.
 *
 * The environment carries descriptor numbers only, never a secret. If any
 * step fails the process exits at once with one line on stderr: exit 3 when
 * it could not harden itself (it is then given nothing), exit 4 when the
 * model did not arrive.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHANNEL_ENV "APPLIANCE_MODEL_CHANNEL"
#define TARGET_ENV "APPLIANCE_MODEL_FD"
#define HARDENING_FAILED 3
#define HANDOFF_FAILED 4
#define MAX_FILES 8 /* the model and up to 7 adapters */

static const char HARDENED[] = "hardened";

static void leave(int code, const char *what, int error) {
    if (error != 0) {
        dprintf(STDERR_FILENO, "appliance-nodump: %s (%s)\n", what, strerror(error));
    } else {
        dprintf(STDERR_FILENO, "appliance-nodump: %s\n", what);
    }
    _exit(code);
}

/* Parse "N" or "N,M,...": descriptor numbers above stderr; returns how many. */
static int descriptors(const char *name, int *numbers, int most) {
    const char *text = getenv(name);
    char *end = NULL;
    long value;
    int count = 0;
    if (text == NULL || *text == '\0') {
        leave(HANDOFF_FAILED, "not started by the appliance: no model channel", 0);
    }
    for (;;) {
        errno = 0;
        value = strtol(text, &end, 10);
        if (errno != 0 || end == text || value <= STDERR_FILENO || value > INT_MAX || count == most) {
            leave(HANDOFF_FAILED, "the model channel's descriptor numbers are invalid", 0);
        }
        numbers[count++] = (int)value;
        if (*end == '\0') {
            return count;
        }
        if (*end != ',') {
            leave(HANDOFF_FAILED, "the model channel's descriptor numbers are invalid", 0);
        }
        text = end + 1;
    }
}

static void harden(void) {
    const struct rlimit none = {0, 0};
    if (setrlimit(RLIMIT_CORE, &none) != 0) {
        leave(HARDENING_FAILED, "llama-server cannot turn off core dumps; refusing to go on", errno);
    }
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 || prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0) {
        leave(HARDENING_FAILED,
              "llama-server cannot make itself non-dumpable (prctl PR_SET_DUMPABLE refused); "
              "refusing to hold model weights or prompts in it",
              errno);
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        leave(HARDENING_FAILED, "llama-server cannot set no_new_privs; refusing to go on", errno);
    }
}

static void receive_files(int channel, int *files, int count) {
    char byte;
    struct iovec data = {.iov_base = &byte, .iov_len = 1};
    union {
        struct cmsghdr header;
        char space[CMSG_SPACE(MAX_FILES * sizeof(int))];
    } control;
    struct msghdr message = {
        .msg_iov = &data,
        .msg_iovlen = 1,
        .msg_control = control.space,
        .msg_controllen = sizeof(control.space),
    };
    struct cmsghdr *header;
    ssize_t got;

    if (send(channel, HARDENED, sizeof(HARDENED) - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof(HARDENED) - 1)) {
        leave(HANDOFF_FAILED, "cannot reach the appliance over the model channel", errno);
    }
    do {
        got = recvmsg(channel, &message, MSG_CMSG_CLOEXEC);
    } while (got < 0 && errno == EINTR);
    header = CMSG_FIRSTHDR(&message);
    if (got <= 0 || (message.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) != 0 || header == NULL ||
        header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS ||
        header->cmsg_len != CMSG_LEN(count * sizeof(int))) {
        leave(HANDOFF_FAILED, "the appliance did not hand over the model", got < 0 ? errno : 0);
    }
    memcpy(files, CMSG_DATA(header), count * sizeof(int));
}

__attribute__((constructor)) static void appliance_nodump(void) {
    int channel, count, i, j;
    int targets[MAX_FILES], files[MAX_FILES];

    harden(); /* first: nothing below may run while the process is dumpable */
    if (descriptors(CHANNEL_ENV, &channel, 1) != 1) {
        leave(HANDOFF_FAILED, "the model channel's descriptor numbers are invalid", 0);
    }
    count = descriptors(TARGET_ENV, targets, MAX_FILES);
    receive_files(channel, files, count);
    /* The appliance numbers the targets above every descriptor the child can
       hold here, so placing one never closes another; check rather than trust. */
    for (i = 0; i < count; i++) {
        for (j = 0; j < count; j++) {
            if (targets[i] == channel || (j != i && (targets[i] == targets[j] || targets[i] == files[j]))) {
                leave(HANDOFF_FAILED, "the model's descriptor numbers collide", 0);
            }
        }
    }
    for (i = 0; i < count; i++) {
        if (files[i] != targets[i]) {
            if (dup3(files[i], targets[i], O_CLOEXEC) < 0) {
                leave(HANDOFF_FAILED, "cannot place the model's descriptor", errno);
            }
            close(files[i]);
        }
    }
    close(channel);
    unsetenv(CHANNEL_ENV);
    unsetenv(TARGET_ENV);
    unsetenv("LD_PRELOAD");
}
