module example.org/albatros

go 1.22
