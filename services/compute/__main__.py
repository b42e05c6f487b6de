"""`python -m services.compute`: run the compute agent until SIGTERM/SIGINT."""

from services.common.process import run
from services.compute.app import SERVICE_NAMES, start_agent
from services.compute.settings import ComputeSettings

if __name__ == "__main__":
    run(ComputeSettings, start_agent, SERVICE_NAMES)
