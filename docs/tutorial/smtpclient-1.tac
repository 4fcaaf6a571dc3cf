from twisted.application import service
# The first line of the .tac file imports twisted.application.service , a module
# which contains many of the basic service classes and helper functions available
# in Twisted. In particular, we will be using the Application function to create
# a new application service . An application service simply acts as a central
# object on which to store certain kinds of deployment configuration.

application = service.Application("SMTP Client Tutorial")

# The second line of the .tac file creates a new application service and binds
# it to the local name application . twistd requires this local name in each .tac
# file it runs. It uses various pieces of configuration on the object to determine
# its behavior. For example, "SMTP Client Tutorial" will be used as the name of
# the .tap file into which to serialize application state, should it be necessary
# to do so.
