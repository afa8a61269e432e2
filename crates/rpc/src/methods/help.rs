//! The text of `help`: every method with its usage and one line on what it does, by group.
//! A test checks that this table and the registered methods agree.

/// `(group, name, arguments, summary)`.
pub const METHODS: &[(&str, &str, &str, &str)] = &[
    (
        "Blockchain",
        "getbestblockhash",
        "",
        "Hash of the main-chain tip.",
    ),
    (
        "Blockchain",
        "getblock",
        "\"blockhash\" ( verbosity )",
        "A block: 0 hex, 1 with txids, 2 with transactions and fees, 3 also with each input's prevout.",
    ),
    (
        "Blockchain",
        "getblockchaininfo",
        "",
        "Chain name, height, best hash, difficulty, sync progress, disk size.",
    ),
    (
        "Blockchain",
        "getblockcount",
        "",
        "Height of the main-chain tip.",
    ),
    (
        "Blockchain",
        "getblockhash",
        "height",
        "Hash of the main-chain block at a height.",
    ),
    (
        "Blockchain",
        "getblockheader",
        "\"blockhash\" ( verbose )",
        "A block header (object, or hex).",
    ),
    (
        "Blockchain",
        "getblockstats",
        "hash_or_height ( stats )",
        "Fee, size and count statistics of a main-chain block.",
    ),
    (
        "Blockchain",
        "getchaintips",
        "",
        "Every known branch tip and how it relates to the main chain.",
    ),
    (
        "Blockchain",
        "getchaintxstats",
        "( nblocks \"blockhash\" )",
        "Transaction count and rate over a window of blocks.",
    ),
    (
        "Blockchain",
        "getdifficulty",
        "",
        "Difficulty of the tip (1 = the chain's easiest target).",
    ),
    (
        "Blockchain",
        "gettxout",
        "\"txid\" n ( include_mempool )",
        "An unspent output, or null.",
    ),
    (
        "Blockchain",
        "gettxoutsetinfo",
        "",
        "UTXO set count, total and order-independent digest.",
    ),
    (
        "Blockchain",
        "gettxspendingprevout",
        "[{\"txid\",\"vout\"},...] ( {\"mempool_only\"} )",
        "Which transaction spends each output (mempool, then the spender index).",
    ),
    (
        "Address",
        "getaddressbalance",
        "\"address\"",
        "Confirmed and unconfirmed balance of an address.",
    ),
    (
        "Address",
        "getaddresstxids",
        "\"address\" ( {\"limit\",\"after\",\"order\"} )",
        "Transactions of an address; paged by cursor when options are given.",
    ),
    (
        "Address",
        "getaddressutxos",
        "\"address\" ( {\"limit\",\"after\"} )",
        "Unspent outputs of an address; paged by cursor when options are given.",
    ),
    (
        "Control",
        "help",
        "( \"command\" )",
        "This list, or the usage of one command.",
    ),
    ("Control", "stop", "", "Stops the node (needs credentials)."),
    ("Control", "uptime", "", "Seconds since the node started."),
    (
        "Mempool",
        "getmempoolancestors",
        "\"txid\" ( verbose )",
        "Pooled ancestors of a pooled transaction.",
    ),
    (
        "Mempool",
        "getmempooldescendants",
        "\"txid\" ( verbose )",
        "Pooled descendants of a pooled transaction.",
    ),
    (
        "Mempool",
        "getmempoolentry",
        "\"txid\"",
        "Pool entry of a transaction.",
    ),
    (
        "Mempool",
        "getmempoolinfo",
        "( fee_histogram )",
        "Pool size, bytes, limits; with bucket bounds, a fee-rate histogram.",
    ),
    (
        "Mempool",
        "getrawmempool",
        "( verbose )",
        "Pooled txids, or entries by txid.",
    ),
    (
        "Mempool",
        "sendrawtransaction",
        "\"hexstring\" ( maxfeerate )",
        "Validates, pools and relays a transaction.",
    ),
    (
        "Mempool",
        "testmempoolaccept",
        "[\"rawtx\",...]",
        "Whether transactions would be accepted, without pooling them.",
    ),
    (
        "Mining",
        "generatetoaddress",
        "nblocks \"address\" ( maxtries )",
        "Mines blocks now (dev chains; needs credentials).",
    ),
    (
        "Mining",
        "getmininginfo",
        "",
        "Height, difficulty, hash rate, pool size, whether mining.",
    ),
    (
        "Mining",
        "getnetworkhashps",
        "( nblocks height )",
        "Estimated network hashes per second.",
    ),
    (
        "Mining",
        "submitblock",
        "\"hexdata\"",
        "Validates and stores a block (needs credentials).",
    ),
    (
        "Network",
        "getconnectioncount",
        "",
        "Number of connected peers.",
    ),
    (
        "Network",
        "getnettotals",
        "",
        "Payload bytes received and sent over the network.",
    ),
    (
        "Network",
        "getnetworkinfo",
        "",
        "Version, connections, peer id and listen addresses.",
    ),
    ("Network", "getpeerinfo", "", "Connected peers."),
    (
        "Rawtransactions",
        "decoderawtransaction",
        "\"hexstring\"",
        "A transaction decoded, without looking anything up.",
    ),
    (
        "Rawtransactions",
        "getrawtransaction",
        "\"txid\" ( verbosity \"blockhash\" )",
        "A transaction: 0 hex, 1 decoded, 2 also with each input's prevout and the fee.",
    ),
    (
        "Util",
        "estimatefee",
        "( conf_target )",
        "Fee rate (base units per byte) to confirm within a number of blocks.",
    ),
    (
        "Util",
        "estimatesmartfee",
        "conf_target ( \"estimate_mode\" )",
        "Bitcoin Core's shape of estimatefee.",
    ),
    (
        "Util",
        "getindexinfo",
        "( \"index_name\" )",
        "The indexes and the height they are synced to.",
    ),
    (
        "Util",
        "validateaddress",
        "\"address\"",
        "Whether an address is valid on this chain, and why not.",
    ),
];

/// Subscription methods (WebSocket only), listed by `help` after the rest.
pub const SUBSCRIPTIONS: &[(&str, &str)] = &[
    (
        "subscribe_newblocks",
        "Notifies every new main-chain block (WebSocket).",
    ),
    (
        "subscribe_newtransactions",
        "Notifies every transaction entering the pool (WebSocket).",
    ),
];

/// `help` with no command: every method by group; with one: its usage and summary (as Bitcoin
/// Core, an unknown command is answered with a message, not an error).
pub fn text(command: Option<&str>) -> String {
    match command {
        Some(c) => match METHODS.iter().find(|m| m.1 == c) {
            Some((_, name, args, summary)) => {
                format!("{name} {args}\n\n{summary}").replace(" \n", "\n")
            }
            None => match SUBSCRIPTIONS.iter().find(|s| s.0 == c) {
                Some((name, summary)) => format!("{name}\n\n{summary}"),
                None => format!("help: unknown command: {c}"),
            },
        },
        None => {
            let mut out = String::new();
            let mut group = "";
            for (g, name, args, _) in METHODS {
                if *g != group {
                    if !out.is_empty() {
                        out.push('\n');
                    }
                    out.push_str(&format!("== {g} ==\n"));
                    group = g;
                }
                out.push_str(format!("{name} {args}").trim_end());
                out.push('\n');
            }
            out.push_str("\n== Subscriptions ==\n");
            for (name, _) in SUBSCRIPTIONS {
                out.push_str(name);
                out.push('\n');
            }
            out
        }
    }
}
