// kafkajs 2.x against a skein broker: admin (create topic with configs, metadata, offsets,
// delete) and an idempotent, gzip-compressed producer. kafkajs has no assign()-style consumer
// (its consumer needs consumer groups, a later issue), so the pytest caller reads the records
// back with confluent-kafka and checks them byte for byte.
// Usage: node kafkajs_check.js HOST:PORT TOPIC COUNT
const { Kafka, CompressionTypes, logLevel } = require('kafkajs');

async function main() {
  const [broker, topic, countArg] = process.argv.slice(2);
  const count = Number(countArg);
  const kafka = new Kafka({ clientId: 'skein-e2e-kafkajs', brokers: [broker], logLevel: logLevel.WARN });
  const admin = kafka.admin();
  await admin.connect();
  const created = await admin.createTopics({
    topics: [{ topic, numPartitions: 2, configEntries: [{ name: 'retention.ms', value: '3600000' }] }],
    waitForLeaders: true,
  });
  if (!created) throw new Error('createTopics reported the topic as existing');
  const again = await admin.createTopics({ topics: [{ topic, numPartitions: 2 }] });
  if (again) throw new Error('second createTopics should report the topic as existing');

  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const results = [];
  for (let start = 0; start < count; start += 100) {
    const messages = [];
    for (let i = start; i < Math.min(count, start + 100); i++) {
      messages.push({ key: `k${i}`, value: `v${i}`, partition: i % 2, headers: { h: `x${i}` } });
    }
    results.push(...await producer.send({ topic, acks: -1, compression: CompressionTypes.GZIP, messages }));
  }
  await producer.disconnect();
  for (const r of results) {
    if (r.errorCode !== 0) throw new Error(`produce error ${JSON.stringify(r)}`);
  }

  const md = await admin.fetchTopicMetadata({ topics: [topic] });
  const parts = md.topics[0].partitions.map((p) => p.partitionId).sort();
  if (JSON.stringify(parts) !== '[0,1]') throw new Error(`metadata partitions ${parts}`);
  const offsets = await admin.fetchTopicOffsets(topic);
  const total = offsets.reduce((n, o) => n + Number(o.high) - Number(o.low), 0);
  if (total !== count) throw new Error(`offsets say ${total} records, produced ${count}`);
  const configs = await admin.describeConfigs({ resources: [{ type: 2, name: topic }], includeSynonyms: false });
  const ret = configs.resources[0].configEntries.find((e) => e.configName === 'retention.ms');
  if (!ret || ret.configValue !== '3600000') throw new Error(`retention.ms ${JSON.stringify(ret)}`);
  await admin.disconnect();
  console.log(JSON.stringify({ ok: true, total }));
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : e);
  process.exit(1);
});
