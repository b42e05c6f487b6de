"""`python -m services.node`: run the node service until SIGTERM/SIGINT."""

from services.common.process import run
from services.node.app import SERVICE_NAMES, start_node_service
from services.node.settings import NodeSettings

if __name__ == "__main__":
    run(NodeSettings, start_node_service, SERVICE_NAMES)
