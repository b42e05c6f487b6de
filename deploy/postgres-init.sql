-- Each Berth service owns its database: the registry uses `berth`, the node service this one.
CREATE DATABASE berth_node OWNER berth;
