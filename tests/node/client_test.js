// Drives the Cloud Tasks emulator with the official Node.js client over insecure gRPC.
// Usage: node client_test.js HOST:PORT PARENT TARGET_URL
// Prints one JSON object with what it observed; tests/emulator/test_emulator_node_client.py
// checks it and the deliveries.
'use strict';

const {CloudTasksClient} = require('@google-cloud/tasks');
const grpc = require('@grpc/grpc-js');

async function main() {
  const [hostPort, parent, targetUrl] = process.argv.slice(2);
  const [servicePath, port] = hostPort.split(':');
  const client = new CloudTasksClient({
    servicePath,
    port: Number(port),
    sslCreds: grpc.credentials.createInsecure(),
  });
  const queueName = `${parent}/queues/node-client`;
  const [queue] = await client.createQueue({
    parent,
    queue: {name: queueName, rateLimits: {maxDispatchesPerSecond: 10}},
  });
  const taskName = `${queueName}/tasks/from-node`;
  const [task] = await client.createTask({
    parent: queueName,
    task: {
      name: taskName,
      httpRequest: {
        httpMethod: 'POST',
        url: targetUrl,
        headers: {'Content-Type': 'application/json'},
        body: Buffer.from(JSON.stringify({from: 'node'})).toString('base64'),
        oidcToken: {serviceAccountEmail: 'node@emu.iam.gserviceaccount.com'},
      },
    },
  });
  let duplicateCode = null;
  try {
    await client.createTask({parent: queueName, task: {name: taskName, httpRequest: {url: targetUrl}}});
  } catch (err) {
    duplicateCode = err.code;
  }
  let missingCode = null;
  try {
    await client.getQueue({name: `${parent}/queues/does-not-exist`});
  } catch (err) {
    missingCode = err.code;
  }
  const [queues] = await client.listQueues({parent});
  await client.close();
  process.stdout.write(
    JSON.stringify({
      queueState: queue.state,
      maxBurstSize: queue.rateLimits.maxBurstSize,
      taskName: task.name,
      duplicateCode,
      missingCode,
      queues: queues.map((q) => q.name),
    }) + '\n',
  );
}

main().catch((err) => {
  process.stderr.write(`${err.stack || err}\n`);
  process.exit(1);
});
