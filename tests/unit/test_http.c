/*
 * The HTTP listeners' small parts: listen addresses (httpd_parse_listen),
 * the relay's per-address rate (ratelimit.c). The listeners themselves are
 * tested with real clients in tests/integration (test_http_ops.py,
 * test_relay.py).
 */
#include "check.h"
#include "httpd.h"
#include "ratelimit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check_listen(const char *text, const char *host, int port)
{
    char got_host[64], err[200];
    int got_port = -1;
    check_context("listen '%s'", text);
    int rc = httpd_parse_listen(text, got_host, sizeof got_host, &got_port, err, sizeof err);
    if (host == NULL) {
        CHECK_EQ_INT(rc, -1);
        CHECK(strstr(err, text) != NULL); /* the message names the value */
    } else if (CHECK_EQ_INT(rc, 0)) {
        CHECK_STR_EQ(got_host, host);
        CHECK_EQ_INT(got_port, port);
    }
    check_context(NULL);
}

static void test_listen_addresses(void)
{
    check_listen("0.0.0.0:9464", "0.0.0.0", 9464);
    check_listen("127.0.0.1:0", "127.0.0.1", 0);
    check_listen("localhost:8080", "localhost", 8080);
    check_listen("[::]:9464", "::", 9464);
    check_listen("[::1]:65535", "::1", 65535);
    check_listen("9464", NULL, 0);
    check_listen(":9464", NULL, 0);
    check_listen("host:", NULL, 0);
    check_listen("host:65536", NULL, 0);
    check_listen("host:-1", NULL, 0);
    check_listen("host:12ab", NULL, 0);
    check_listen("[::1]9464", NULL, 0);
    check_listen("[::1:9464", NULL, 0);
}

static void test_rate_per_address(void)
{
    static struct ratelimit rl;
    int wait = 0;
    ratelimit_init(&rl, 10, 20);
    CHECK_EQ_INT(ratelimit_take(&rl, "10.0.0.1", 20, 0, &wait), 0); /* a burst */
    CHECK_EQ_INT(ratelimit_take(&rl, "10.0.0.1", 1, 0, &wait), -1);
    CHECK_EQ_INT(wait, 1);
    CHECK_EQ_INT(ratelimit_take(&rl, "10.0.0.2", 20, 0, &wait), 0); /* its own bucket */
    CHECK_EQ_INT(ratelimit_take(&rl, "10.0.0.1", 5, 500, &wait), 0); /* 5 back in 0.5 s */
    CHECK_EQ_INT(ratelimit_take(&rl, "10.0.0.1", 15, 500, &wait), -1);
    CHECK_EQ_INT(wait, 2);                                           /* 15 need 1.5 s */
    CHECK_EQ_INT(ratelimit_take(&rl, "10.0.0.1", 15, 2000, &wait), 0);
    ratelimit_init(&rl, 0, 1);
    CHECK_EQ_INT(ratelimit_take(&rl, "10.0.0.1", 1000000, 0, &wait), 0); /* no limit */
}

/* However many addresses send, the table stays its size and each new one
 * starts with a full burst. */
static void test_many_addresses_stay_bounded(void)
{
    static struct ratelimit rl;
    int wait = 0;
    char addr[32];
    ratelimit_init(&rl, 1, 5);
    for (int i = 0; i < 100000; i++) {
        snprintf(addr, sizeof addr, "10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
        if (ratelimit_take(&rl, addr, 5, i, &wait) != 0) {
            CHECK(0);
            break;
        }
    }
    CHECK_EQ_INT(ratelimit_take(&rl, addr, 1, 100000, &wait), -1); /* the last is remembered */
}

int main(void)
{
    RUN(test_listen_addresses);
    RUN(test_rate_per_address);
    RUN(test_many_addresses_stay_bounded);
    return check_finish();
}
