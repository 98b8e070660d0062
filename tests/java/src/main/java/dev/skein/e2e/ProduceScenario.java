package dev.skein.e2e;

import static dev.skein.e2e.Util.emit;
import static dev.skein.e2e.Util.obj;
import static dev.skein.e2e.Util.str;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.Future;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * The producer with its defaults (idempotent, acks=all) under every codec: keys (some null),
 * values (some null), headers (repeated keys, a null value, none at all) and explicit timestamps,
 * to two partitions; then the consumer reads every record back. The report lists what was sent
 * (with the offsets the producer was told) and what was read, per codec.
 */
final class ProduceScenario {
  private ProduceScenario() {}

  static final String[] CODECS = {"none", "gzip", "snappy", "lz4", "zstd"};

  static void run(String bootstrap, String[] args) throws Exception {
    String prefix = args[0];
    int n = args.length > 1 ? Integer.parseInt(args[1]) : 300;
    long base = System.currentTimeMillis() - 60_000;
    Map<String, Object> report = new java.util.LinkedHashMap<>();
    try (Admin admin = Admin.create(Util.adminProps(bootstrap))) {
      for (String codec : CODECS) {
        Util.createTopic(admin, prefix + "-" + codec, 2, (short) 1, Map.of());
      }
    }
    for (String codec : CODECS) {
      String topic = prefix + "-" + codec;
      List<Map<String, Object>> sent = produce(bootstrap, topic, codec, n, base);
      List<Map<String, Object>> received = consume(bootstrap, topic, n);
      report.put(codec, obj("topic", topic, "sent", sent, "received", received));
    }
    report.put("transactions", transactional(bootstrap, prefix + "-none"));
    emit(obj("report", report));
  }

  /** A transactional producer (skein has no transactions): what initTransactions() says, and how fast. */
  private static Map<String, Object> transactional(String bootstrap, String topic) {
    Properties p = new Properties();
    p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, topic + "-tx");
    p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "10000");
    long t0 = System.nanoTime();
    try (KafkaProducer<byte[], byte[]> producer =
        new KafkaProducer<>(p, new ByteArraySerializer(), new ByteArraySerializer())) {
      producer.initTransactions();
      return obj("error", null, "ms", (System.nanoTime() - t0) / 1_000_000);
    } catch (Exception e) {
      return obj("error", e.getClass().getSimpleName(), "message", e.getMessage(), "ms", (System.nanoTime() - t0) / 1_000_000);
    }
  }

  private static List<Map<String, Object>> produce(String bootstrap, String topic, String codec, int n, long base)
      throws Exception {
    Properties p = new Properties();
    p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    p.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec);
    p.put(ProducerConfig.LINGER_MS_CONFIG, "20");
    p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "30000");
    p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "10000");
    // enable.idempotence and acks are left at the client's defaults (true, all): the test reads
    // the producer id of every stored batch from the broker's log.
    List<Future<RecordMetadata>> futures = new ArrayList<>();
    List<Map<String, Object>> sent = new ArrayList<>();
    try (KafkaProducer<byte[], byte[]> producer =
        new KafkaProducer<>(p, new ByteArraySerializer(), new ByteArraySerializer())) {
      for (int i = 0; i < n; i++) {
        int partition = i % 2;
        String key = i % 7 == 0 ? null : "key-" + i;
        String value = i % 11 == 0 ? null : "value-" + i + "-" + "x".repeat(i % 50);
        long ts = base + i * 10L;
        RecordHeaders headers = new RecordHeaders();
        if (i % 5 != 0) {
          headers.add("h", Util.bytes("x" + i));
          headers.add("dup", Util.bytes("a"));
          headers.add("dup", Util.bytes("b"));
          headers.add("nullh", null);
        }
        futures.add(
            producer.send(
                new ProducerRecord<>(topic, partition, ts, Util.bytes(key), Util.bytes(value), headers)));
        sent.add(obj("partition", partition, "key", key, "value", value, "timestamp", ts, "headers", headerList(headers)));
      }
      producer.flush();
      for (int i = 0; i < n; i++) {
        RecordMetadata md = futures.get(i).get();
        sent.get(i).put("offset", md.offset());
        sent.get(i).put("acked_partition", md.partition());
        sent.get(i).put("acked_timestamp", md.timestamp());
      }
    }
    return sent;
  }

  static List<List<String>> headerList(Iterable<Header> headers) {
    List<List<String>> out = new ArrayList<>();
    for (Header h : headers) {
      List<String> kv = new ArrayList<>();
      kv.add(h.key());
      kv.add(str(h.value()));
      out.add(kv);
    }
    return out;
  }

  private static List<Map<String, Object>> consume(String bootstrap, String topic, int n) {
    Properties c = new Properties();
    c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    c.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "none");
    c.put(ConsumerConfig.FETCH_MAX_WAIT_MS_CONFIG, "100");
    List<Map<String, Object>> got = new ArrayList<>();
    try (KafkaConsumer<byte[], byte[]> consumer =
        new KafkaConsumer<>(c, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
      List<TopicPartition> tps = List.of(new TopicPartition(topic, 0), new TopicPartition(topic, 1));
      consumer.assign(tps);
      consumer.seekToBeginning(tps);
      long deadline = System.currentTimeMillis() + 30_000;
      while (got.size() < n && System.currentTimeMillis() < deadline) {
        for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(200))) {
          got.add(
              obj(
                  "partition", r.partition(),
                  "offset", r.offset(),
                  "key", str(r.key()),
                  "value", str(r.value()),
                  "timestamp", r.timestamp(),
                  "timestamp_type", r.timestampType().name,
                  "headers", headerList(r.headers()),
                  "leader_epoch", r.leaderEpoch()));
        }
      }
      // Nothing more than what was sent: one more poll finds no further record.
      for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(300))) {
        got.add(obj("partition", r.partition(), "offset", r.offset(), "unexpected", true));
      }
    }
    return got;
  }
}
