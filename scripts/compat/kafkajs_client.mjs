// Compatibility check with npm's kafkajs, a pure-JavaScript protocol implementation
// independent of librdkafka: admin create/list, idempotent produce (uncompressed and gzip),
// a consumer group reading everything exactly once in per-partition order, and the
// committed offsets read back through the admin API; Kafka topic configs set, described and
// altered, and a gzip topic (the codec kafkajs has built in) that recompresses what an
// uncompressed producer sends, read back by a consumer. Exits non-zero on any mismatch.
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

// Topic configs as Kafka tools set them: created, described, altered.
const { ConfigResourceTypes } = require('kafkajs');
const configTopic = 'compat-kafkajs-configs';
const configEntries = [
  { name: 'cleanup.policy', value: 'compact' },
  { name: 'compression.type', value: 'gzip' },
  { name: 'delete.retention.ms', value: '900' },
  { name: 'message.timestamp.type', value: 'LogAppendTime' },
  { name: 'min.cleanable.dirty.ratio', value: '0.2' },
  { name: 'segment.jitter.ms', value: '10' },
];
await admin.createTopics({ topics: [{ topic: configTopic, numPartitions: 1, configEntries }], waitForLeaders: true });
const describe = async () => {
  const d = await admin.describeConfigs({ resources: [{ type: ConfigResourceTypes.TOPIC, name: configTopic }], includeSynonyms: false });
  return new Map(d.resources[0].configEntries.map((e) => [e.configName, e.configValue]));
};
let described = await describe();
check(configEntries.every((e) => described.get(e.name) === e.value), 'describeConfigs returns every config set at creation');
await admin.alterConfigs({
  validateOnly: false,
  resources: [{ type: ConfigResourceTypes.TOPIC, name: configTopic, configEntries: [...configEntries, { name: 'retention.ms', value: '3600000' }] }],
});
described = await describe();
check(described.get('retention.ms') === '3600000', 'alterConfigs changed retention.ms');
let refused = false;
try {
  await admin.alterConfigs({ resources: [{ type: ConfigResourceTypes.TOPIC, name: configTopic, configEntries: [{ name: 'compression.type', value: 'brotli' }] }] });
} catch (e) {
  refused = /INVALID_CONFIG|invalid/i.test(`${e.type} ${e.message}`);
}
check(refused, 'a value Kafka refuses (compression.type=brotli) is refused with INVALID_CONFIG');

// The gzip topic recompresses an uncompressed producer's batches; LogAppendTime stamps them.
const plain = kafka.producer();
await plain.connect();
const before = Date.now();
await plain.send({ topic: configTopic, messages: Array.from({ length: 50 }, (_, i) => ({ key: `k${i}`, value: `v${i}`, timestamp: '1000' })) });
await plain.disconnect();
const reader = kafka.consumer({ groupId: 'compat-kafkajs-configs' });
await reader.connect();
await reader.subscribe({ topic: configTopic, fromBeginning: true });
const got = [];
let stampedOk = true;
await new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error('timed out reading the gzip topic')), 30000);
  reader.run({
    eachMessage: async ({ message }) => {
      got.push(message.value.toString());
      const ts = Number(message.timestamp);
      if (!(ts >= before && ts <= Date.now())) stampedOk = false;
      if (got.length === 50) { clearTimeout(timer); resolve(); }
    },
  });
});
await reader.disconnect();
check(got.every((v, i) => v === `v${i}`), 'the recompressed records read back in order');
check(stampedOk, 'every record carries the broker\'s append time, not the producer\'s');
await admin.disconnect();
