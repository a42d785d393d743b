// Compatibility check with npm's kafkajs, a pure-JavaScript protocol implementation
// independent of librdkafka: admin create/list, idempotent produce (uncompressed and gzip),
// a consumer group reading everything exactly once in per-partition order, and the
// committed offsets read back through the admin API. Exits non-zero on any mismatch.
import { createRequire } from 'node:module';
const require = createRequire(process.env.KAFKAJS_DIR + '/');
const { Kafka, CompressionTypes, logLevel } = require('kafkajs');

const bootstrap = process.argv[2];
const topic = 'compat-kafkajs';
const groupId = 'compat-kafkajs-group';
const N = 300;

function check(ok, what) {
  if (!ok) {
    console.error(`FAIL: ${what}`);
    process.exit(1);
  }
  console.log(`ok: ${what}`);
}

const kafka = new Kafka({ clientId: 'strom-compat', brokers: [bootstrap], logLevel: logLevel.ERROR, retry: { retries: 3 } });

const admin = kafka.admin();
await admin.connect();
await admin.createTopics({ topics: [{ topic, numPartitions: 3 }], waitForLeaders: true });
check((await admin.listTopics()).includes(topic), 'admin created the topic and lists it');

const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
await producer.connect();
for (let i = 0; i < N; i += 50) {
  const messages = [];
  for (let j = i; j < i + 50; j++) messages.push({ key: `k${j % 10}`, value: `v${j}`, headers: { n: `${j}` } });
  await producer.send({ topic, acks: -1, compression: i % 100 === 0 ? CompressionTypes.GZIP : CompressionTypes.None, messages });
}
await producer.disconnect();
console.log(`ok: produced ${N} keyed records with headers (idempotent, acks=-1, none and gzip)`);

const consumer = kafka.consumer({ groupId, sessionTimeout: 10000, heartbeatInterval: 1000 });
await consumer.connect();
await consumer.subscribe({ topic, fromBeginning: true });
const seen = new Map();
const lastOffset = new Map();
let inOrder = true;
const done = new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error(`only ${seen.size} of ${N} records within 60 s`)), 60000);
  consumer.run({
    eachMessage: async ({ partition, message }) => {
      const offset = Number(message.offset);
      if (lastOffset.has(partition) && offset <= lastOffset.get(partition)) inOrder = false;
      lastOffset.set(partition, offset);
      const v = message.value.toString();
      seen.set(v, (seen.get(v) || 0) + 1);
      if (message.headers.n.toString() !== v.slice(1)) inOrder = false;
      if (seen.size === N) {
        clearTimeout(timer);
        resolve();
      }
    },
  });
});
await done;
await consumer.disconnect(); // commits what was consumed
check([...seen.values()].every((c) => c === 1) && seen.size === N, `the group consumed all ${N} records exactly once`);
check(inOrder, 'offsets rise within each partition and headers match values');

const offsets = await admin.fetchOffsets({ groupId, topics: [topic] });
const committed = offsets[0].partitions.reduce((sum, p) => sum + Number(p.offset), 0);
check(committed === N, `committed offsets add up to ${N} (got ${committed})`);
const groups = await admin.listGroups();
check(groups.groups.some((g) => g.groupId === groupId), 'ListGroups shows the group');
await admin.disconnect();
