/*
 * A rate-limited librdkafka producer for skein's latency workloads (W5, W7).
 *
 * rdkafka_performance's own -r limiter busy-polls between messages, which on a two-CPU
 * machine takes a whole CPU from the brokers being measured. This one sleeps between 1 ms
 * ticks and produces the messages due in each tick. Each value starts with
 * "LATENCY:<wall clock in µs>", the format `rdkafka_performance -C -l` reads for end-to-end
 * latency; the publish latency of each message (produce call to delivery report, librdkafka's
 * rd_kafka_message_latency) is written, in µs, one per line, to the file given.
 *
 * usage: rate_producer BROKERS TOPIC RATE SECONDS SIZE LATENCY_FILE [key=value ...]
 * (bench.keys=N: each message gets key "key-<i mod N>", for compacted topics; the other pairs
 * are librdkafka settings)
 * prints: sent=N acked=N failed=N seconds=S
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "rdkafka.h"

static FILE *lat_fp;
static long long acked, failed;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
        (void)rk;
        (void)opaque;
        if (m->err) {
                failed++;
                return;
        }
        acked++;
        fprintf(lat_fp, "%" PRId64 "\n", rd_kafka_message_latency(m));
}

static double mono(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long long wall_us(void) {
        struct timeval tv;
        gettimeofday(&tv, NULL);
        return (long long)tv.tv_sec * 1000000LL + tv.tv_usec;
}

int main(int argc, char **argv) {
        char err[512];
        if (argc < 7) {
                fprintf(stderr,
                        "usage: %s BROKERS TOPIC RATE SECONDS SIZE LATENCY_FILE [key=value ...]\n",
                        argv[0]);
                return 2;
        }
        const char *topic = argv[2];
        double rate = atof(argv[3]), seconds = atof(argv[4]);
        int size = atoi(argv[5]);
        if (rate <= 0 || seconds <= 0 || size < 32) {
                fprintf(stderr, "rate and seconds must be positive, size at least 32\n");
                return 2;
        }
        if (!(lat_fp = fopen(argv[6], "w"))) {
                perror(argv[6]);
                return 1;
        }
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        if (rd_kafka_conf_set(conf, "bootstrap.servers", argv[1], err, sizeof err) ||
            rd_kafka_conf_set(conf, "queue.buffering.max.messages", "1000000", err, sizeof err)) {
                fprintf(stderr, "%s\n", err);
                return 1;
        }
        long keys = 0;
        for (int i = 7; i < argc; i++) {
                char *eq = strchr(argv[i], '=');
                if (!eq) {
                        fprintf(stderr, "expected key=value, got %s\n", argv[i]);
                        return 2;
                }
                *eq = '\0';
                if (!strcmp(argv[i], "bench.keys")) {
                        keys = atol(eq + 1);
                        continue;
                }
                if (rd_kafka_conf_set(conf, argv[i], eq + 1, err, sizeof err)) {
                        fprintf(stderr, "%s\n", err);
                        return 1;
                }
        }
        rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
        if (!rk) {
                fprintf(stderr, "%s\n", err);
                return 1;
        }
        char *value = malloc((size_t)size);
        memset(value, ' ', (size_t)size);
        long long total = (long long)(rate * seconds), sent = 0;
        double start = mono();
        while (sent < total) {
                long long due = (long long)((mono() - start) * rate) + 1;
                if (due > total)
                        due = total;
                /* The messages of one tick are produced within microseconds: one timestamp. */
                int n = snprintf(value, (size_t)size, "LATENCY:%lld", wall_us());
                value[n] = ' ';
                while (sent < due) {
                        char key[32];
                        int klen = keys > 0 ? snprintf(key, sizeof key, "key-%lld", sent % keys) : 0;
                        if (rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
                                              RD_KAFKA_V_KEY(keys > 0 ? key : NULL, (size_t)klen),
                                              RD_KAFKA_V_VALUE(value, (size_t)size),
                                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                              RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                                rd_kafka_poll(rk, 1);
                                continue;
                        }
                        sent++;
                }
                rd_kafka_poll(rk, 0);
                /* Wait to the next message's due time in rd_kafka_poll, so delivery reports are
                 * served (and their latency read) as they arrive; then sleep the sub-ms rest. */
                double pause;
                while ((pause = start + (double)sent / rate - mono()) >= 0.001)
                        rd_kafka_poll(rk, (int)(pause * 1000));
                if (pause > 0) {
                        if (pause < 0.0005)
                                pause = 0.0005;
                        struct timespec ts = {(time_t)pause, (long)((pause - (long)pause) * 1e9)};
                        nanosleep(&ts, NULL);
                }
        }
        rd_kafka_flush(rk, 60000);
        double wall = mono() - start;
        int left = rd_kafka_outq_len(rk);
        rd_kafka_destroy(rk);
        fclose(lat_fp);
        printf("sent=%lld acked=%lld failed=%lld unflushed=%d seconds=%.3f\n", sent, acked,
               failed, left, wall);
        return failed || left ? 1 : 0;
}
