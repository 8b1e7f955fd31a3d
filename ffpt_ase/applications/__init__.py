"""Applications built on the generic core: the systems of the FFPT paper (hydrogen
combustion, aspirin, liquid water) with their teachers, decks, monitors and workflows."""
