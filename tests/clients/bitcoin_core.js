// Drives cairnd with the npm `bitcoin-core` client (5.0.0), default settings, as an explorer
// would. Usage: node bitcoin_core.js HOST_URL USER PASSWORD MINER_ADDRESS
// Prints one JSON line of what it saw; exits non-zero on any failure.
const Client = require('bitcoin-core');

const [host, username, password, address] = process.argv.slice(2);

async function main() {
  const client = new Client({ host, username, password, timeout: 30000 });
  const seen = {};
  seen.getblockcount = await client.getBlockCount();
  seen.getbestblockhash = await client.getBestBlockHash();
  seen.getblockhash0 = await client.getBlockHash(0);
  const block = await client.getBlock(seen.getblockhash0);
  seen.getblock_height = block.height;
  seen.chain = (await client.getBlockchainInfo()).chain;
  seen.batch = await client.command([
    { method: 'getblockcount' },
    { method: 'getblockhash', parameters: [0] },
  ]);
  try {
    await client.command('nosuchmethod');
    seen.unknown = null;
  } catch (e) {
    seen.unknown = e.code;
  }
  seen.generated = (await client.generateToAddress(2, address)).length;
  seen.after = await client.getBlockCount();
  console.log(JSON.stringify(seen));
}

main().catch((e) => {
  console.error(`bitcoin-core client failed: ${e.stack || e}`);
  process.exit(1);
});
