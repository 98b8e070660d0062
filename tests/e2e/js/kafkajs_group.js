// kafkajs 2.x consumer group against a skein broker: two consumers in one group read a topic
// between them (kafkajs commits after each batch), then both disconnect (LeaveGroup).
// Prints "<records read> <distinct records>" once no record arrived for 5 s.
// Usage: node kafkajs_group.js HOST:PORT TOPIC GROUP EXPECTED
const { Kafka, logLevel } = require('kafkajs');

async function main() {
  const [broker, topic, group, expectedArg] = process.argv.slice(2);
  const expected = Number(expectedArg);
  const kafka = new Kafka({ clientId: 'skein-e2e-kafkajs-group', brokers: [broker], logLevel: logLevel.WARN });
  const got = [];
  let last = Date.now();
  const consumers = [kafka.consumer({ groupId: group }), kafka.consumer({ groupId: group })];
  for (const c of consumers) {
    await c.connect();
    await c.subscribe({ topic, fromBeginning: true });
    await c.run({
      eachMessage: async ({ message }) => {
        got.push(Number(message.value.toString()));
        last = Date.now();
      },
    });
  }
  const deadline = Date.now() + 90000;
  while (Date.now() < deadline && !(got.length >= expected && Date.now() - last > 5000)) {
    await new Promise((r) => setTimeout(r, 200));
  }
  for (const c of consumers) await c.disconnect();
  console.log(`${got.length} ${new Set(got).size}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
