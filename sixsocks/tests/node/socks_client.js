// The npm package `socks` (a SOCKS client nobody in this project wrote)
// against a running sixsocks, for sixsocks/tests/npm_socks.rs.
//
// usage: node socks_client.js PROXY_HOST PROXY_PORT TCP_ECHO_PORT UDP_ECHO_PORT
//
// Both echo servers listen on 127.0.0.1. For each step the script prints one
// line `OK <step> <details>`; on the first failure it prints `FAIL <step>:
// <error>` on stderr and exits 1. At the end it prints `ALL OK`. A watchdog
// ends it (exit 2) if it takes longer than 60 s.
'use strict';

const net = require('net');
const dgram = require('dgram');
const { SocksClient } = require('socks');

const [proxyHost, proxyPortS, tcpEchoS, udpEchoS] = process.argv.slice(2);
if (!udpEchoS) {
  console.error('usage: node socks_client.js PROXY_HOST PROXY_PORT TCP_ECHO_PORT UDP_ECHO_PORT');
  process.exit(64);
}
const proxyPort = Number(proxyPortS);
const tcpEcho = Number(tcpEchoS);
const udpEcho = Number(udpEchoS);
const STEP_TIMEOUT_MS = 10000;

const watchdog = setTimeout(() => {
  console.error('FAIL watchdog: the script ran for more than 60 s');
  process.exit(2);
}, 60000);

function proxy(type) {
  return { host: proxyHost, port: proxyPort, type };
}

function withTimeout(promise, what) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: timed out`)), STEP_TIMEOUT_MS);
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

// Read exactly n bytes from a stream socket.
function readExactly(socket, n) {
  return new Promise((resolve, reject) => {
    let got = Buffer.alloc(0);
    const onData = (d) => {
      got = Buffer.concat([got, d]);
      if (got.length >= n) {
        cleanup();
        resolve(got);
      }
    };
    const onEnd = () => {
      cleanup();
      reject(new Error(`EOF after ${got.length} of ${n} bytes`));
    };
    const onError = (e) => {
      cleanup();
      reject(e);
    };
    function cleanup() {
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('error', onError);
    }
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('error', onError);
    socket.resume();
  });
}

function expectEqual(got, want, what) {
  if (!Buffer.from(got).equals(Buffer.from(want))) {
    throw new Error(`${what}: got ${JSON.stringify(String(got))}, want ${JSON.stringify(String(want))}`);
  }
}

async function connectStep(type, host) {
  const { socket } = await SocksClient.createConnection({
    proxy: proxy(type),
    command: 'connect',
    destination: { host, port: tcpEcho },
    timeout: STEP_TIMEOUT_MS,
  });
  const msg = `hello over socks${type} to ${host}`;
  socket.write(msg);
  expectEqual(await readExactly(socket, msg.length), msg, 'echo');
  socket.destroy();
  console.log(`OK connect socks${type} ${host}`);
}

// BIND: the proxy listens; a second party (this script, from 127.0.0.1)
// connects to the announced address; bytes flow both ways.
async function bindStep(type) {
  const client = new SocksClient({
    proxy: proxy(type),
    command: 'bind',
    destination: { host: '127.0.0.1', port: 0 },
    timeout: STEP_TIMEOUT_MS,
  });
  const bound = new Promise((resolve, reject) => {
    client.once('bound', resolve);
    client.once('error', reject);
  });
  const established = new Promise((resolve, reject) => {
    client.once('established', resolve);
    client.once('error', reject);
  });
  client.connect();
  const b = await bound;
  if (!b.remoteHost || !b.remoteHost.port) {
    throw new Error(`first reply without a port: ${JSON.stringify(b.remoteHost)}`);
  }
  const second = net.connect({ host: b.remoteHost.host, port: b.remoteHost.port });
  await new Promise((resolve, reject) => {
    second.once('connect', resolve);
    second.once('error', reject);
  });
  const e = await established;
  if (e.remoteHost.port !== second.localPort || e.remoteHost.host !== second.localAddress) {
    throw new Error(
      `second reply names ${e.remoteHost.host}:${e.remoteHost.port}, ` +
        `the second party is ${second.localAddress}:${second.localPort}`
    );
  }
  const inMsg = `from the second party to the socks${type} binder`;
  second.write(inMsg);
  expectEqual(await readExactly(e.socket, inMsg.length), inMsg, 'inbound to client');
  const outMsg = 'from the binder';
  e.socket.write(outMsg);
  expectEqual(await readExactly(second, outMsg.length), outMsg, 'client to inbound');
  e.socket.destroy();
  second.destroy();
  console.log(
    `OK bind socks${type} bound=${b.remoteHost.host}:${b.remoteHost.port} ` +
      `peer=${e.remoteHost.host}:${e.remoteHost.port}`
  );
}

// UDP ASSOCIATE, with the package's own frame builder and parser: a
// standalone datagram, then one in three fragments (FRAG 1, 2, 0x83).
async function associateStep() {
  const udp = dgram.createSocket('udp4');
  await new Promise((resolve) => udp.bind(0, '127.0.0.1', resolve));
  const messages = [];
  let waiter = null;
  udp.on('message', (m) => {
    messages.push(m);
    if (waiter) waiter();
  });
  function nextMessage() {
    return withTimeout(
      new Promise((resolve) => {
        const take = () => {
          if (messages.length) {
            waiter = null;
            resolve(messages.shift());
          }
        };
        waiter = take;
        take();
      }),
      'UDP reply'
    );
  }
  // createConnection() only does CONNECT: the README's event interface.
  const client = new SocksClient({
    proxy: proxy(5),
    command: 'associate',
    destination: { host: '0.0.0.0', port: 0 },
    timeout: STEP_TIMEOUT_MS,
  });
  const established = new Promise((resolve, reject) => {
    client.once('established', resolve);
    client.once('error', reject);
  });
  client.connect();
  const { socket, remoteHost: relay } = await established;
  const echo = { host: '127.0.0.1', port: udpEcho };
  udp.send(
    SocksClient.createUDPFrame({ remoteHost: echo, data: Buffer.from('npm socks datagram') }),
    relay.port,
    relay.host
  );
  let r = SocksClient.parseUDPFrame(await nextMessage());
  expectEqual(r.data, 'npm socks datagram', 'UDP echo');
  if (r.remoteHost.host !== '127.0.0.1' || r.remoteHost.port !== udpEcho || r.frameNumber !== 0) {
    throw new Error(`UDP reply header: ${JSON.stringify({ ...r, data: undefined })}`);
  }
  const parts = [
    [1, 'fragment one, '],
    [2, 'fragment two, '],
    [0x83, 'the last fragment'],
  ];
  for (const [frameNumber, text] of parts) {
    udp.send(
      SocksClient.createUDPFrame({ remoteHost: echo, frameNumber, data: Buffer.from(text) }),
      relay.port,
      relay.host
    );
  }
  r = SocksClient.parseUDPFrame(await nextMessage());
  expectEqual(r.data, 'fragment one, fragment two, the last fragment', 'reassembled datagram');
  socket.destroy();
  udp.close();
  console.log(`OK associate relay=${relay.host}:${relay.port} fragments reassembled`);
}

async function main() {
  const steps = [
    ['connect socks5', () => connectStep(5, '127.0.0.1')],
    ['connect socks5 name', () => connectStep(5, 'localhost')],
    ['connect socks4', () => connectStep(4, '127.0.0.1')],
    ['bind socks5', () => bindStep(5)],
    ['bind socks4', () => bindStep(4)],
    ['associate', () => associateStep()],
  ];
  for (const [name, run] of steps) {
    try {
      await withTimeout(run(), name);
    } catch (e) {
      console.error(`FAIL ${name}: ${e && e.stack ? e.stack : e}`);
      process.exit(1);
    }
  }
  clearTimeout(watchdog);
  console.log('ALL OK');
}

main();
