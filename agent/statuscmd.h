/*
 * statuscmd: `telemetry-agent status`, the running agent's /status as a
 * short table for a person (see statuscmd.c).
 */
#ifndef TA_STATUSCMD_H
#define TA_STATUSCMD_H

/* argv[0] is "status". Returns the exit code. */
int status_command(int argc, char **argv, char **envp);

#endif
