package dev.skein.e2e;

import static dev.skein.e2e.Util.emit;
import static dev.skein.e2e.Util.get;
import static dev.skein.e2e.Util.obj;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.MemberDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringSerializer;

/** Consumer groups: the classic protocol with two assignors, KIP-848, static membership. */
final class GroupScenarios {
  private GroupScenarios() {}

  static final int PARTITIONS = 4;
  static final int PER_PARTITION = 10;
  static final Duration SETTLE = Duration.ofSeconds(40);

  static void produce(String bootstrap, String topic, String phase) throws Exception {
    Properties p = new Properties();
    p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "30000");
    p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "10000");
    try (KafkaProducer<String, String> producer =
        new KafkaProducer<>(p, new StringSerializer(), new StringSerializer())) {
      List<java.util.concurrent.Future<?>> fs = new ArrayList<>();
      for (int part = 0; part < PARTITIONS; part++) {
        for (int i = 0; i < PER_PARTITION; i++) {
          fs.add(producer.send(new ProducerRecord<>(topic, part, phase + "-p" + part + "-" + i, phase + "-v" + i)));
        }
      }
      for (var f : fs) f.get();
    }
  }

  static Properties memberProps(String bootstrap, String group, String protocol) {
    if (protocol.equals("consumer")) {
      Properties p = Member.props(bootstrap, group);
      p.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "consumer");
      return p;
    }
    return Member.classic(bootstrap, group, protocol);
  }

  static boolean split(Member a, Member b) {
    List<Integer> oa = a.ownedNow();
    List<Integer> ob = b.ownedNow();
    Set<Integer> union = new HashSet<>(oa);
    union.addAll(ob);
    return oa.size() == PARTITIONS / 2 && ob.size() == PARTITIONS / 2 && union.size() == PARTITIONS;
  }

  static long countPhase(Member m, String phase) {
    synchronized (m.records) {
      return m.records.stream().filter(r -> r.key().startsWith(phase + "-")).count();
    }
  }

  static Map<String, Object> describe(Admin admin, String group) throws Exception {
    ConsumerGroupDescription d = get(admin.describeConsumerGroups(List.of(group)).all()).get(group);
    List<Map<String, Object>> members = new ArrayList<>();
    for (MemberDescription m : d.members()) {
      members.add(
          obj(
              "client_id", m.clientId(),
              "member_id", m.consumerId(),
              "instance_id", m.groupInstanceId(),
              "host", m.host(),
              "assignment", Util.parts(m.assignment().topicPartitions()),
              "member_epoch", m.memberEpoch()));
    }
    members.sort((x, y) -> String.valueOf(x.get("client_id")).compareTo(String.valueOf(y.get("client_id"))));
    return obj(
        "state", d.groupState() == null ? null : d.groupState().toString(),
        "type", d.type() == null ? null : d.type().toString(),
        "assignor", d.partitionAssignor(),
        "simple", d.isSimpleConsumerGroup(),
        "coordinator", d.coordinator() == null ? null : d.coordinator().id(),
        "group_epoch", d.groupEpoch(),
        "members", members);
  }

  static Map<String, Object> committed(Admin admin, String group) throws Exception {
    Map<TopicPartition, OffsetAndMetadata> offs =
        get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata());
    Map<String, Object> out = new TreeMap<>();
    for (var e : offs.entrySet()) {
      out.put(String.valueOf(e.getKey().partition()), e.getValue() == null ? null : e.getValue().offset());
    }
    return out;
  }

  /**
   * Two members of one group: A alone reads phase 1 and commits; B joins (the log shows what each
   * gave up and got); both read phase 2; the Admin client describes the group and its offsets; B
   * leaves and A takes every partition back.
   */
  static void group(String bootstrap, String[] args) throws Exception {
    String topic = args[0];
    String protocol = args[1];
    String group = topic + "-group";
    Map<String, Object> report = new java.util.LinkedHashMap<>();
    try (Admin admin = Admin.create(Util.adminProps(bootstrap))) {
      Util.createTopic(admin, topic, PARTITIONS, (short) 1, Map.of());
      produce(bootstrap, topic, "one");
      Member a = new Member("A", topic, memberProps(bootstrap, group, protocol));
      Util.waitFor(
          "A to own every partition and read phase one",
          SETTLE,
          () -> a.fatal != null || (a.ownedNow().size() == PARTITIONS && countPhase(a, "one") == PARTITIONS * PER_PARTITION));
      if (a.fatal != null) throw new IllegalStateException("A failed", a.fatal);
      report.put("a_commit_one", a.commit());
      report.put("a_generation_alone", a.generation());
      Member.mark("B joins");
      Member b = new Member("B", topic, memberProps(bootstrap, group, protocol));
      Util.waitFor("A and B to split the partitions", SETTLE, () -> a.fatal != null || b.fatal != null || split(a, b));
      Member.mark("split");
      produce(bootstrap, topic, "two");
      Util.waitFor(
          "A and B to read phase two",
          SETTLE,
          () -> a.fatal != null || b.fatal != null || countPhase(a, "two") + countPhase(b, "two") >= PARTITIONS * PER_PARTITION);
      Util.sleep(300); // nothing more arrives
      report.put("a_owned_split", a.ownedNow());
      report.put("b_owned_split", b.ownedNow());
      report.put("a_commit_two", a.commit());
      report.put("b_commit_two", b.commit());
      report.put("a_generation_split", a.generation());
      report.put("b_generation_split", b.generation());
      report.put("describe_split", describe(admin, group));
      report.put("committed_split", committed(admin, group));
      Member.mark("B leaves");
      b.close(true);
      Util.waitFor("A to own every partition again", SETTLE, () -> a.fatal != null || a.ownedNow().size() == PARTITIONS);
      report.put("a_owned_after_leave", a.ownedNow());
      report.put("describe_after_leave", describe(admin, group));
      Member.mark("A leaves");
      a.close(true);
      Util.waitFor(
          "the group to be empty",
          SETTLE,
          () -> {
            try {
              return ((List<?>) describe(admin, group).get("members")).isEmpty();
            } catch (Exception e) {
              return false;
            }
          });
      report.put("describe_empty", describe(admin, group));
      report.put("a_fatal", Util.errorName(a.fatal));
      report.put("b_fatal", Util.errorName(b.fatal));
      report.put("a_records", a.recordsJson());
      report.put("b_records", b.recordsJson());
      report.put("log", new ArrayList<>(Member.LOG));
    }
    emit(obj("report", report));
  }

  /**
   * Static members (group.instance.id) s1 and s2 share four partitions. "restart": s2 closes
   * without leaving and a new process with its instance id takes its place: it gets s2's
   * partitions back and s1 sees no rebalance. "fence": a new process with s1's instance id joins
   * while s1 runs: the old s1 must be fenced (FencedInstanceIdException) and the new one gets its
   * partitions.
   */
  static void staticMembers(String bootstrap, String[] args) throws Exception {
    String topic = args[0];
    String mode = args[1];
    String group = topic + "-group";
    Map<String, Object> report = new java.util.LinkedHashMap<>();
    try (Admin admin = Admin.create(Util.adminProps(bootstrap))) {
      Util.createTopic(admin, topic, PARTITIONS, (short) 1, Map.of());
      Member s1 = new Member("s1", topic, staticProps(bootstrap, group, "s1"));
      Util.waitFor("s1 to own every partition", SETTLE, () -> s1.fatal != null || s1.ownedNow().size() == PARTITIONS);
      Member s2 = new Member("s2", topic, staticProps(bootstrap, group, "s2"));
      Util.waitFor("s1 and s2 to split the partitions", SETTLE, () -> s1.fatal != null || s2.fatal != null || split(s1, s2));
      report.put("s1_owned", s1.ownedNow());
      report.put("s2_owned", s2.ownedNow());
      report.put("s1_member_id", s1.memberId());
      report.put("s1_generation", s1.generation());
      report.put("describe_stable", describe(admin, group));
      if (mode.equals("restart")) {
        Member.mark("s2 restarts");
        s2.close(false);
        Member s2b = new Member("s2-again", topic, staticProps(bootstrap, group, "s2"));
        Util.waitFor("the new s2 to own partitions", SETTLE, () -> s2b.fatal != null || !s2b.ownedNow().isEmpty());
        Util.sleep(2_000); // a few heartbeats: a rebalance would show now
        report.put("s2b_owned", s2b.ownedNow());
        report.put("s2b_generation", s2b.generation());
        report.put("s1_owned_after", s1.ownedNow());
        report.put("s1_generation_after", s1.generation());
        report.put("describe_after", describe(admin, group));
        report.put("s1_fatal", Util.errorName(s1.fatal));
        report.put("s2b_fatal", Util.errorName(s2b.fatal));
        s2b.close(true);
      } else {
        Member.mark("s1 replaced");
        Member s1b = new Member("s1-new", topic, staticProps(bootstrap, group, "s1"));
        try {
          Util.waitFor(
              "the old s1 to be fenced and the new one to own its partitions",
              Duration.ofSeconds(5),
              () -> s1b.fatal != null || (s1.fatal != null && !s1b.ownedNow().isEmpty()));
        } catch (IllegalStateException timedOut) {
          report.put("timed_out", timedOut.getMessage());
        }
        report.put("s1_fatal", Util.errorName(s1.fatal));
        report.put("s1_owned_after", s1.ownedNow());
        report.put("s1b_owned", s1b.ownedNow());
        report.put("s1b_fatal", Util.errorName(s1b.fatal));
        report.put("s2_owned_after", s2.ownedNow());
        report.put("describe_after", describe(admin, group));
        s1b.close(true);
        s1.close(true);
      }
      s2.close(true);
      report.put("log", new ArrayList<>(Member.LOG));
    }
    emit(obj("report", report));
  }

  static Properties staticProps(String bootstrap, String group, String instance) {
    Properties p = Member.classic(bootstrap, group, "range");
    p.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, instance);
    p.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "10000");
    return p;
  }
}
