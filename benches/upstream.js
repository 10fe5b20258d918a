// A wa-hub-shaped upstream for the load tool: Node's http server (wa-hub runs on Node/Express),
// answering GET /instances/<id>/client/status with the recorded fixture body, /health, and
// /big with a 50 KiB JSON array (the large-body route).
// Requires `Authorization: Bearer testkey` like wa-hub. Usage: node upstream.js PORT FIXTURES_JSONL
const http = require('http');
const fs = require('fs');
const [port, fixtures] = process.argv.slice(2);
const lines = fs.readFileSync(fixtures, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
const status = lines.find((l) => l.path.endsWith('/client/status') && l.status === 200).body;
const health = lines.find((l) => l.path === '/health').body;
const unauthorized = lines.find((l) => l.status === 401).body;
const big = JSON.stringify(Array.from({ length: 400 }, (_, i) => ({ id: `WASP-shop-${i}`, status: 'ready', name: 'x'.repeat(80) }))).slice(0, 51200);
const bigBody = big.endsWith(']') ? big : JSON.stringify(JSON.parse(big.slice(0, big.lastIndexOf('},') + 1) + ']'));
const server = http.createServer((req, res) => {
  if (req.headers.authorization !== 'Bearer testkey') {
    res.writeHead(401, { 'content-type': 'application/json; charset=utf-8' });
    return res.end(unauthorized);
  }
  const body = req.url === '/health' ? health : req.url === '/big' ? bigBody : status;
  res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) });
  res.end(body);
});
server.listen(Number(port), '127.0.0.1', () => console.log('listening'));
