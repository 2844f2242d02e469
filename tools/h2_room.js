// A room of members that never read, over HTTP/2 (issue 13): CONNS
// connections of STREAMS streams each, all with a zero flow-control window, so
// the server can send them nothing past the headers. Prints the server's RSS.
//
//   cargo build --release -p tower-sse-chat
//   ADDR=127.0.0.1:3913 target/release/chat & PID=$!
//   PID=$PID CONNS=60 STREAMS=100 node tools/h2_room.js
'use strict';
const http2 = require('node:http2');
const fs = require('node:fs');

const PORT = Number(process.env.PORT || 3913);
const PID = Number(process.env.PID);
const CONNS = Number(process.env.CONNS || 60);
const STREAMS = Number(process.env.STREAMS || 100);

function rssMb() {
  const status = fs.readFileSync(`/proc/${PID}/status`, 'utf8');
  const line = status.split('\n').find((l) => l.startsWith('VmRSS'));
  return Math.round(Number(line.split(/\s+/)[1]) / 1024);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  console.log(`start: ${rssMb()} MB`);
  const sessions = [];
  let opened = 0;
  const t0 = Date.now();
  for (let c = 0; c < CONNS; c++) {
    const session = http2.connect(`http://127.0.0.1:${PORT}`, {
      settings: { initialWindowSize: 0 },
    });
    session.on('error', () => {});
    sessions.push(session);
    for (let s = 0; s < STREAMS; s++) {
      const req = session.request({
        ':path': `/sse?room=big&name=h${c}-${s}`,
        accept: 'text/event-stream',
      });
      req.on('response', () => { opened += 1; });
      req.on('error', () => {});
      // Never read: the stream is paused and its window stays at zero.
      req.pause();
    }
    await sleep(20);
  }
  for (let i = 0; i < 100 && opened < CONNS * STREAMS; i++) await sleep(100);
  console.log(`${opened} of ${CONNS * STREAMS} streams answered, ${((Date.now() - t0) / 1000).toFixed(1)} s: ${rssMb()} MB`);
  for (const at of [15, 30, 45]) {
    const wait = at * 1000 - (Date.now() - t0);
    if (wait > 0) await sleep(wait);
    console.log(`t=${at}s: RSS ${rssMb()} MB`);
  }
  for (const session of sessions) session.destroy();
  await sleep(5000);
  console.log(`after all closed: ${rssMb()} MB`);
}

main().then(() => process.exit(0));
