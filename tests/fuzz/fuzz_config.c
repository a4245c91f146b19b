/*
 * Fuzz target: the configuration. The input is an INI file, then after a
 * NUL byte environment variables, one a line. It is loaded as the agent
 * loads it at start; a configuration that loads is described as the
 * start-up log does and reconciled with the defaults as a reload would.
 * Loading must never crash, and a refusal must come with a message.
 */
#define _GNU_SOURCE /* memfd_create */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static void ignore_change(void *arg, const char *section, const char *name, const char *from,
                          const char *to, int needs_restart)
{
    (void)arg;
    (void)section;
    (void)name;
    (void)from;
    (void)to;
    (void)needs_restart;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    log_set_level(LOG_ERROR);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, '\0', size);
    size_t ini_len = nul ? (size_t)(nul - data) : size;
    int fd = memfd_create("fuzz.ini", MFD_CLOEXEC);
    if (fd < 0 || write(fd, data, ini_len) != (ssize_t)ini_len)
        abort();
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    /* the environment: NUL-terminated lines after the INI */
    size_t env_len = nul ? size - ini_len - 1 : 0;
    char *env_text = malloc(env_len + 1);
    char **envp = calloc(env_len + 2, sizeof *envp);
    if (env_text == NULL || envp == NULL)
        abort();
    if (env_len > 0)
        memcpy(env_text, nul + 1, env_len);
    env_text[env_len] = '\0';
    size_t n = 0;
    for (char *line = strtok(env_text, "\n"); line != NULL; line = strtok(NULL, "\n"))
        envp[n++] = line;
    struct config cfg, running;
    char err[CONFIG_ERR_LEN] = "";
    if (config_load(&cfg, path, envp, err, sizeof err) == 0) {
        char text[4096];
        const char *section;
        for (size_t i = 0; (section = config_section(i)) != NULL; i++)
            config_describe_section(&cfg, section, text, sizeof text);
        if (config_load(&running, NULL, NULL, err, sizeof err) == 0) {
            config_reconcile(&running, &cfg, ignore_change, NULL, err, sizeof err);
            config_free(&running);
        }
        config_free(&cfg);
    } else if (err[0] == '\0') {
        abort(); /* refused without saying why */
    }
    free(envp);
    free(env_text);
    close(fd);
    return 0;
}
