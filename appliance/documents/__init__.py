"""Local documents: parsing in a disposable child, labels, an encrypted store.

`library.Library` is what a signed-in user works with (the service runs it
for each connection; a home without a service runs it in-process);
`home.open_documents` opens the home's store and keeps its key's escrow in
step with the officers. Nothing is imported here: the parser child imports
this package first and must start with the parsers alone.
"""
