package dev.skein.e2e;

import static dev.skein.e2e.Util.emit;
import static dev.skein.e2e.Util.get;
import static dev.skein.e2e.Util.obj;
import static dev.skein.e2e.Util.outcome;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.CreateTopicsOptions;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.GroupListing;
import org.apache.kafka.clients.admin.ListGroupsOptions;
import org.apache.kafka.clients.admin.ListOffsetsResult.ListOffsetsResultInfo;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.QuorumInfo;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.ElectionType;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.quota.ClientQuotaFilter;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * The Admin client: topics (create, errors, describe, partitions, delete), configs (describe,
 * incrementalAlterConfigs), the cluster and its metadata quorum, ListOffsets (earliest, latest,
 * by time, max timestamp), consumer groups (list, describe) and their offsets (list, alter,
 * delete) and DeleteGroups. Each step's answer or error goes into the report.
 */
final class AdminScenario {
  private AdminScenario() {}

  static final int RECORDS = 20;

  static void run(String bootstrap, String[] args) throws Exception {
    String prefix = args[0];
    String topic = prefix + "-main";
    String group = prefix + "-group";
    Map<String, Object> r = new java.util.LinkedHashMap<>();
    try (Admin admin = Admin.create(Util.adminProps(bootstrap))) {
      // --- topics
      r.put(
          "create",
          outcome(
              admin.createTopics(
                      List.of(
                          new NewTopic(topic, 3, (short) 1)
                              .configs(Map.of("retention.ms", "3600000", "max.message.bytes", "2000000"))))
                  .all()));
      r.put("create_again", outcome(admin.createTopics(List.of(new NewTopic(topic, 3, (short) 1))).all()));
      r.put(
          "create_compact",
          outcome(
              admin.createTopics(
                      List.of(new NewTopic(prefix + "-compact", 1, (short) 1).configs(Map.of("cleanup.policy", "compact"))))
                  .all()));
      r.put(
          "create_unknown_config",
          outcome(
              admin.createTopics(
                      List.of(new NewTopic(prefix + "-unknown", 1, (short) 1).configs(Map.of("no.such.config", "1"))))
                  .all()));
      r.put("create_bad_name", outcome(admin.createTopics(List.of(new NewTopic("bad/name", 1, (short) 1))).all()));
      r.put("create_rf_too_big", outcome(admin.createTopics(List.of(new NewTopic(prefix + "-rf", 1, (short) 3))).all()));
      r.put(
          "create_validate_only",
          outcome(
              admin.createTopics(List.of(new NewTopic(prefix + "-dry", 2, (short) 1)), new CreateTopicsOptions().validateOnly(true))
                  .all()));
      Set<String> names = get(admin.listTopics().names());
      r.put("listed", names.contains(topic));
      r.put("listed_dry_run", names.contains(prefix + "-dry"));
      r.put("listed_compact", names.contains(prefix + "-compact"));
      r.put("listed_failed", names.contains(prefix + "-unknown"));
      r.put("describe_topic", describeTopic(admin, topic));
      r.put("describe_missing", outcome(admin.describeTopics(List.of(prefix + "-missing")).allTopicNames()));
      r.put("partitions_to_5", outcome(admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(5))).all()));
      r.put("partitions_to_4", outcome(admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(4))).all()));
      r.put("partitions_same", outcome(admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(5))).all()));
      r.put(
          "partitions_missing",
          outcome(admin.createPartitions(Map.of(prefix + "-missing", NewPartitions.increaseTo(2))).all()));
      r.put("partitions_after", ((List<?>) describeTopic(admin, topic).get("partitions")).size());

      // --- configs
      ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, topic);
      r.put("configs", configs(admin, res));
      r.put(
          "alter_set_delete",
          outcome(
              admin.incrementalAlterConfigs(
                      Map.of(
                          res,
                          List.of(
                              new AlterConfigOp(new ConfigEntry("retention.ms", "7200000"), AlterConfigOp.OpType.SET),
                              new AlterConfigOp(new ConfigEntry("max.message.bytes", ""), AlterConfigOp.OpType.DELETE),
                              new AlterConfigOp(new ConfigEntry("segment.bytes", "2097152"), AlterConfigOp.OpType.SET))))
                  .all()));
      r.put("configs_after", configs(admin, res));
      r.put(
          "alter_unknown_key",
          outcome(
              admin.incrementalAlterConfigs(
                      Map.of(res, List.of(new AlterConfigOp(new ConfigEntry("no.such.config", "1"), AlterConfigOp.OpType.SET))))
                  .all()));
      r.put(
          "alter_bad_value",
          outcome(
              admin.incrementalAlterConfigs(
                      Map.of(res, List.of(new AlterConfigOp(new ConfigEntry("retention.ms", "soon"), AlterConfigOp.OpType.SET))))
                  .all()));
      r.put(
          "alter_missing_topic",
          outcome(
              admin.incrementalAlterConfigs(
                      Map.of(
                          new ConfigResource(ConfigResource.Type.TOPIC, prefix + "-missing"),
                          List.of(new AlterConfigOp(new ConfigEntry("retention.ms", "1000"), AlterConfigOp.OpType.SET))))
                  .all()));

      // --- the cluster
      DescribeClusterResult cl = admin.describeCluster();
      List<Integer> nodeIds = new ArrayList<>();
      for (Node n : get(cl.nodes())) nodeIds.add(n.id());
      Node controller = get(cl.controller());
      r.put("cluster", obj("id", get(cl.clusterId()), "nodes", nodeIds, "controller", controller == null ? null : controller.id()));
      ConfigResource brokerRes = new ConfigResource(ConfigResource.Type.BROKER, String.valueOf(nodeIds.get(0)));
      Map<String, Object> brokerConfigs = configs(admin, brokerRes);
      r.put("broker_config_count", brokerConfigs.size());
      r.put("broker_config_sample", pick(brokerConfigs, "log.retention.ms", "num.partitions", "log.segment.bytes", "message.max.bytes"));
      try {
        QuorumInfo q = get(admin.describeMetadataQuorum().quorumInfo());
        List<Map<String, Object>> voters = new ArrayList<>();
        for (QuorumInfo.ReplicaState v : q.voters()) {
          voters.add(obj("id", v.replicaId(), "log_end_offset", v.logEndOffset()));
        }
        r.put(
            "quorum",
            obj("leader", q.leaderId(), "epoch", q.leaderEpoch(), "high_watermark", q.highWatermark(), "voters", voters,
                "observers", q.observers().size()));
      } catch (Exception e) {
        r.put("quorum", obj("error", e.getClass().getSimpleName(), "message", e.getMessage()));
      }

      // --- ListOffsets: 20 records on partition 0, timestamps base, base+1000, ... (13: base+50000)
      long base = System.currentTimeMillis() - 600_000;
      produce(bootstrap, topic, base);
      TopicPartition p0 = new TopicPartition(topic, 0);
      r.put("offsets_base", base);
      r.put("offset_earliest", listOffset(admin, p0, OffsetSpec.earliest()));
      r.put("offset_latest", listOffset(admin, p0, OffsetSpec.latest()));
      r.put("offset_by_time_mid", listOffset(admin, p0, OffsetSpec.forTimestamp(base + 5_500)));
      r.put("offset_by_time_exact", listOffset(admin, p0, OffsetSpec.forTimestamp(base + 7_000)));
      r.put("offset_by_time_before", listOffset(admin, p0, OffsetSpec.forTimestamp(base - 1_000_000)));
      r.put("offset_by_time_after", listOffset(admin, p0, OffsetSpec.forTimestamp(base + 10_000_000)));
      r.put("offset_max_timestamp", listOffset(admin, p0, OffsetSpec.maxTimestamp()));
      r.put("offset_empty_partition_latest", listOffset(admin, new TopicPartition(topic, 4), OffsetSpec.latest()));

      // --- a group's offsets: a consumer reads 12 records of partition 0 and commits
      consumeAndCommit(bootstrap, topic, group, 12);
      r.put("groups_listed", listGroups(admin, group));
      r.put("group_describe", GroupScenarios.describe(admin, group));
      r.put("group_offsets", GroupScenarios.committed(admin, group));
      r.put(
          "alter_offsets",
          outcome(
              admin.alterConsumerGroupOffsets(
                      group,
                      Map.of(p0, new OffsetAndMetadata(3, "moved"), new TopicPartition(topic, 1), new OffsetAndMetadata(0)))
                  .all()));
      r.put("group_offsets_altered", GroupScenarios.committed(admin, group));
      r.put("group_offset_metadata", get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata()).get(p0).metadata());
      r.put("delete_offsets", outcome(admin.deleteConsumerGroupOffsets(group, Set.of(p0)).all()));
      r.put("group_offsets_deleted", GroupScenarios.committed(admin, group));
      r.put("delete_group", outcome(admin.deleteConsumerGroups(List.of(group)).all()));
      r.put("delete_group_again", outcome(admin.deleteConsumerGroups(List.of(group)).all()));
      r.put("groups_listed_after_delete", listGroups(admin, group));
      r.put("group_offsets_after_delete", GroupScenarios.committed(admin, group));
      r.put("describe_deleted_group", describeOrError(admin, group));

      // --- Admin calls over APIs skein does not serve: a clear error each, never a hang.
      TopicPartition any = new TopicPartition(topic, 0);
      Map<String, Object> unserved = new TreeMap<>();
      unserved.put("describeLogDirs", outcome(admin.describeLogDirs(List.of(nodeIds.get(0))).allDescriptions()));
      unserved.put("electLeaders", outcome(admin.electLeaders(ElectionType.PREFERRED, Set.of(any)).all()));
      unserved.put("describeProducers", outcome(admin.describeProducers(List.of(any)).all()));
      unserved.put("listTransactions", outcome(admin.listTransactions().all()));
      unserved.put("describeAcls", outcome(admin.describeAcls(AclBindingFilter.ANY).values()));
      unserved.put("describeFeatures", outcome(admin.describeFeatures().featureMetadata()));
      unserved.put("listPartitionReassignments", outcome(admin.listPartitionReassignments().reassignments()));
      unserved.put("describeClientQuotas", outcome(admin.describeClientQuotas(ClientQuotaFilter.all()).entities()));
      r.put("unserved", unserved);

      // --- delete the topic
      r.put("delete_topic", outcome(admin.deleteTopics(List.of(topic)).all()));
      r.put("delete_topic_again", outcome(admin.deleteTopics(List.of(topic)).all()));
      Util.waitFor("the topic to go", Duration.ofSeconds(10), () -> {
        try {
          return !get(admin.listTopics().names()).contains(topic);
        } catch (Exception e) {
          return false;
        }
      });
      r.put("describe_deleted_topic", outcome(admin.describeTopics(List.of(topic)).allTopicNames()));
    }
    emit(obj("report", r));
  }

  static Map<String, Object> describeTopic(Admin admin, String topic) throws Exception {
    TopicDescription d = get(admin.describeTopics(List.of(topic)).allTopicNames()).get(topic);
    List<Map<String, Object>> parts = new ArrayList<>();
    for (TopicPartitionInfo p : d.partitions()) {
      parts.add(
          obj(
              "partition", p.partition(),
              "leader", p.leader() == null ? null : p.leader().id(),
              "replicas", p.replicas().stream().map(Node::id).toList(),
              "isr", p.isr().stream().map(Node::id).toList()));
    }
    return obj("name", d.name(), "internal", d.isInternal(), "topic_id", d.topicId().toString(), "partitions", parts);
  }

  static Map<String, Object> configs(Admin admin, ConfigResource res) throws Exception {
    Config c = get(admin.describeConfigs(List.of(res)).all()).get(res);
    Map<String, Object> out = new TreeMap<>();
    for (ConfigEntry e : c.entries()) {
      out.put(e.name(), obj("value", e.value(), "source", e.source().name(), "read_only", e.isReadOnly(), "sensitive", e.isSensitive()));
    }
    return out;
  }

  static Map<String, Object> pick(Map<String, Object> m, String... keys) {
    Map<String, Object> out = new TreeMap<>();
    for (String k : keys) out.put(k, m.get(k));
    return out;
  }

  static Map<String, Object> listOffset(Admin admin, TopicPartition tp, OffsetSpec spec) {
    try {
      ListOffsetsResultInfo i = get(admin.listOffsets(Map.of(tp, spec)).partitionResult(tp));
      return obj("offset", i.offset(), "timestamp", i.timestamp(), "leader_epoch", i.leaderEpoch());
    } catch (Exception e) {
      return obj("error", e.getClass().getSimpleName());
    }
  }

  static void produce(String bootstrap, String topic, long base) throws Exception {
    Properties p = new Properties();
    p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "30000");
    p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "10000");
    try (KafkaProducer<String, String> producer =
        new KafkaProducer<>(p, new StringSerializer(), new StringSerializer())) {
      for (int i = 0; i < RECORDS; i++) {
        // Record 13 has the largest timestamp (not the last record): OffsetSpec.maxTimestamp().
        long ts = i == 13 ? base + 50_000 : base + i * 1000L;
        producer.send(new ProducerRecord<>(topic, 0, ts, "k" + i, "v" + i)).get();
      }
    }
  }

  static void consumeAndCommit(String bootstrap, String topic, String group, int n) {
    Properties c = Member.props(bootstrap, group);
    try (KafkaConsumer<String, String> consumer =
        new KafkaConsumer<>(c, new StringDeserializer(), new StringDeserializer())) {
      TopicPartition p0 = new TopicPartition(topic, 0);
      consumer.assign(List.of(p0));
      consumer.seek(p0, 0);
      int got = 0;
      long deadline = System.currentTimeMillis() + 20_000;
      while (got < n && System.currentTimeMillis() < deadline) {
        got += consumer.poll(Duration.ofMillis(200)).count();
      }
      consumer.commitSync(Map.of(p0, new OffsetAndMetadata(n)));
      consumer.commitSync(Map.of(new TopicPartition(topic, 1), new OffsetAndMetadata(0)));
    }
  }

  static List<Map<String, Object>> listGroups(Admin admin, String group) throws Exception {
    Collection<GroupListing> all = get(admin.listGroups(ListGroupsOptions.forConsumerGroups()).all());
    List<Map<String, Object>> out = new ArrayList<>();
    for (GroupListing g : all) {
      if (g.groupId().equals(group)) {
        out.add(
            obj(
                "group", g.groupId(),
                "type", g.type().map(Object::toString),
                "protocol", g.protocol(),
                "state", g.groupState().map(Object::toString),
                "simple", g.isSimpleConsumerGroup()));
      }
    }
    return out;
  }

  static Object describeOrError(Admin admin, String group) {
    try {
      return GroupScenarios.describe(admin, group);
    } catch (Exception e) {
      return obj("error", e.getClass().getSimpleName());
    }
  }
}
