package dev.skein.e2e;

import static dev.skein.e2e.Util.emit;
import static dev.skein.e2e.Util.get;
import static dev.skein.e2e.Util.obj;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.QuorumInfo;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Against a three-broker cluster: a topic with replication factor 3 and min.insync.replicas=2;
 * an idempotent acks=all producer sends while one group member (classic, or KIP-848 with a third
 * argument "consumer") reads. After the first third is
 * acknowledged the scenario prints {"event": "ready", ...} with each partition's leader and the
 * group's coordinator and waits for a line on stdin: the test kills a broker meanwhile. Then it
 * sends the rest and waits until the member has read every acknowledged record. The report has,
 * per partition, what the producer was told (offset and value) and what the member read.
 */
final class ClusterScenario {
  private ClusterScenario() {}

  static final int PARTITIONS = 3;

  static void run(String bootstrap, String[] args) throws Exception {
    String topic = args[0];
    int total = args.length > 1 ? Integer.parseInt(args[1]) : 900;
    String protocol = args.length > 2 ? args[2] : "classic";
    String group = topic + "-group";
    Map<String, Object> report = new java.util.LinkedHashMap<>();
    try (Admin admin = Admin.create(Util.adminProps(bootstrap))) {
      Util.createTopic(admin, topic, PARTITIONS, (short) 3, Map.of("min.insync.replicas", "2"));
      Util.waitFor("every replica in sync", Duration.ofSeconds(30), () -> isrSizes(admin, topic) == PARTITIONS * 3);

      Properties cp = Member.props(bootstrap, group);
      cp.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, protocol);
      if (protocol.equals("classic")) {
        cp.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "500");
        cp.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "6000");
      }
      cp.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "true");
      cp.put(ConsumerConfig.AUTO_COMMIT_INTERVAL_MS_CONFIG, "200");
      Member reader = new Member("reader", topic, cp);
      Util.waitFor("the reader to own every partition", Duration.ofSeconds(30),
          () -> reader.fatal != null || reader.ownedNow().size() == PARTITIONS);

      Properties pp = new Properties();
      pp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
      pp.put(ProducerConfig.ACKS_CONFIG, "all");
      pp.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
      pp.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "90000");
      pp.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "5000");
      pp.put(ProducerConfig.LINGER_MS_CONFIG, "5");
      pp.put(ProducerConfig.RETRY_BACKOFF_MS_CONFIG, "100");
      pp.put(ProducerConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, "500");
      pp.put(ProducerConfig.METADATA_MAX_AGE_CONFIG, "3000");
      List<Map<String, Object>> acked = Collections.synchronizedList(new ArrayList<>());
      List<String> errors = Collections.synchronizedList(new ArrayList<>());
      AtomicInteger done = new AtomicInteger();
      try (KafkaProducer<String, String> producer = new KafkaProducer<>(pp, new StringSerializer(), new StringSerializer())) {
        int third = total / 3;
        for (int i = 0; i < total; i++) {
          if (i == third) {
            Util.waitFor("the first third acknowledged", Duration.ofSeconds(60), () -> done.get() == third);
            emit(obj("event", "ready", "leaders", leaders(admin, topic), "coordinator", coordinator(admin, group),
                "acked", acked.size(), "cluster", cluster(admin)));
            String line = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8)).readLine();
            report.put("go", line);
          }
          int partition = i % PARTITIONS;
          String value = "m" + i;
          producer.send(new ProducerRecord<>(topic, partition, null, value), (md, e) -> {
            if (e != null) errors.add(value + ": " + e);
            else acked.add(obj("partition", md.partition(), "offset", md.offset(), "value", value));
            done.incrementAndGet();
          });
          Util.sleep(3);
        }
        producer.flush();
      }
      report.put("sent", total);
      report.put("errors", errors);
      Util.waitFor("the reader to read every acknowledged record", Duration.ofSeconds(60),
          () -> reader.fatal != null || distinctRead(reader) >= acked.size());
      report.put("leaders_after", leaders(admin, topic));
      report.put("cluster_after", cluster(admin));
      report.put("reader_owned", reader.ownedNow());
      report.put("reader_fatal", Util.errorName(reader.fatal));
      report.put("acked", byPartition(acked));
      List<Map<String, Object>> read = new ArrayList<>();
      synchronized (reader.records) {
        for (ConsumerRecord<String, String> r : reader.records) {
          read.add(obj("partition", r.partition(), "offset", r.offset(), "value", r.value()));
        }
      }
      report.put("read", byPartition(read));
      report.put("log", new ArrayList<>(Member.LOG));
      reader.close(true);
    }
    emit(obj("report", report));
  }

  /** describeCluster's brokers and controller, and describeMetadataQuorum's leader and voters. */
  static Map<String, Object> cluster(Admin admin) {
    Map<String, Object> out = new java.util.LinkedHashMap<>();
    try {
      var cl = admin.describeCluster();
      out.put("nodes", get(cl.nodes()).stream().map(n -> n.id()).sorted().toList());
      out.put("controller", get(cl.controller()).id());
    } catch (Exception e) {
      out.put("cluster_error", e.toString());
    }
    try {
      QuorumInfo q = get(admin.describeMetadataQuorum().quorumInfo());
      out.put("quorum_leader", q.leaderId());
      out.put("voters", q.voters().stream().map(v -> v.replicaId()).sorted().toList());
    } catch (Exception e) {
      out.put("quorum_error", e.toString());
    }
    return out;
  }

  static long distinctRead(Member m) {
    synchronized (m.records) {
      return m.records.stream().map(r -> r.partition() + "@" + r.offset()).distinct().count();
    }
  }

  static Map<String, Object> byPartition(List<Map<String, Object>> rs) {
    Map<String, Object> out = new TreeMap<>();
    synchronized (rs) {
      for (Map<String, Object> r : rs) {
        @SuppressWarnings("unchecked")
        List<Object> l = (List<Object>) out.computeIfAbsent(String.valueOf(r.get("partition")), k -> new ArrayList<>());
        l.add(List.of(r.get("offset"), r.get("value")));
      }
    }
    return out;
  }

  static int isrSizes(Admin admin, String topic) {
    try {
      TopicDescription d = get(admin.describeTopics(List.of(topic)).allTopicNames()).get(topic);
      int n = 0;
      for (TopicPartitionInfo p : d.partitions()) n += p.isr().size();
      return n;
    } catch (Exception e) {
      return -1;
    }
  }

  static Map<String, Object> leaders(Admin admin, String topic) throws Exception {
    TopicDescription d = get(admin.describeTopics(List.of(topic)).allTopicNames()).get(topic);
    Map<String, Object> out = new TreeMap<>();
    for (TopicPartitionInfo p : d.partitions()) {
      out.put(String.valueOf(p.partition()), p.leader() == null ? null : p.leader().id());
    }
    return out;
  }

  static Integer coordinator(Admin admin, String group) {
    try {
      var n = get(admin.describeConsumerGroups(List.of(group)).all()).get(group).coordinator();
      return n == null ? null : n.id();
    } catch (Exception e) {
      return null;
    }
  }
}
