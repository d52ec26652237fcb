/* kata-agent's main(): everything else lives in the agent library so tests and fuzzers can link it. */
#include "agent.h"

int main(int argc, char **argv)
{
    return agent_main(argc, argv);
}
